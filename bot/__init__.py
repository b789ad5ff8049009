"""ratebot, the application: citizens rate government services in conversation."""


def version() -> str:
    """The installed version of ratebot: pyproject.toml's, the one source. (Looked up when asked:
    importlib.metadata takes a tenth of a small command's start.)"""
    from importlib.metadata import version as installed

    return installed("ratebot")
