"""Measurement of PPT-DeiT: parameters, MACs/FLOPs, throughput, memory, accuracy, sweeps and plots."""
