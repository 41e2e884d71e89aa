__version__ = "0.1.0"


def __getattr__(name):
    "`sr3xct.super_resolve_array` and `sr3xct.load_model`, imported on first use (importing sr3xct stays light)."
    if name == 'super_resolve_array':
        from sr3xct.arrays import super_resolve_array
        return super_resolve_array
    if name == 'load_model':
        from sr3xct.models import load_model
        return load_model
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
