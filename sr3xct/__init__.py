__version__ = "0.1.0"


def __getattr__(name):
    "`sr3xct.super_resolve_array` and `sr3xct.load_model`, imported on first use (importing sr3xct stays light)."
    if name in ('super_resolve_array', 'load_model'):
        from sr3xct import models
        return getattr(models, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
