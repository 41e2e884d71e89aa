"Helpers the CLI tests share (pytest puts this folder on sys.path: the tests are not a package)."
import contextlib, io
from sr3xct.cli import main


def run(*argv):
    "(exit status, stdout, stderr) of `sr3xct ARGV`, in this process."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()
