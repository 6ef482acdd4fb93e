"""Progress bars for long work: ``tqdm.auto`` (a widget in Jupyter, text elsewhere), without the warning it
prints when Jupyter lacks ipywidgets (it then falls back to text bars, which is all we need)."""

from __future__ import annotations


def progress_bar(*args, **kwargs):
    """``tqdm.auto.tqdm(*args, **kwargs)``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)
