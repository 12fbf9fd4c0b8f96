"""The Hub model card and publishing: card template and filling, export folder, upload."""
