"""The Hub model card and publishing: card template and filling, export folder, upload."""

from .card import build_model_card, load_results, normalize_results, pin_usage
from .publish import HubPushError, check_export_folder, export_folder, push_folder


__all__ = [
    "HubPushError",
    "build_model_card",
    "check_export_folder",
    "export_folder",
    "load_results",
    "normalize_results",
    "pin_usage",
    "push_folder",
]
