"""The Hub model card and publishing: card template and filling, export folder, upload."""

from .card import build_model_card, load_results, normalize_results, pin_usage


_PUBLISH_NAMES = ("HubPushError", "check_export_folder", "check_repo_id", "export_folder", "push_folder")


def __getattr__(name):
    # `.publish` is imported on first use rather than here, so that `ppt-publish` does not find the
    # module already imported (runpy's RuntimeWarning) and importing the card helpers stays light.
    if name in _PUBLISH_NAMES:
        from . import publish

        return getattr(publish, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_PUBLISH_NAMES, "build_model_card", "load_results", "normalize_results", "pin_usage"]
