"""Rendering a context through a template, with template problems turned into diagnostics.

Problems in a user's template (syntax, an undefined variable, a sandbox violation) are
input errors (exit 2) located at the template's line; a value the output format cannot
carry (a NUL in a shell word, a control character in XML) is a failed render (exit 1).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jinja2
import jinja2.sandbox

from ..diagnostics import DiagnosticError, error
from ..model import Span
from .env import MAX_USER_OUTPUT, RenderValueError, builtin_environment, user_environment

# A user's template renders in milliseconds and a few MiB; one that loops for longer is
# stopped (the sandbox bounds each ``range`` but not loops nested in one another), and so is
# one that allocates more (``"x" | center(10**9)``, ``"%999999999d" % 1``: 3 GB and minutes).
USER_TEMPLATE_SECONDS = 10.0
USER_TEMPLATE_MEMORY = 256 << 20  # bytes of address space beyond what sevm has mapped


class TemplateLimit(Exception):
    """A user's template ran too long or produced too much."""


def _span(file: str, line: int | None) -> Span | None:
    if not line:
        return None
    return Span(file, line, 1, line, 1)


def _template_line(exc: BaseException, file: str) -> int | None:
    """The template line a render error came from (Jinja rewrites tracebacks so that
    template frames carry the template's file name and line)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render(env: jinja2.Environment, name: str, file: str, context: dict,
            bounded: bool = False) -> str:
    try:
        if not bounded:
            return env.get_template(name).render(context)
        return _render_bounded(env, name, context)
    except TemplateLimit as exc:
        raise DiagnosticError(error(f"template stopped: {exc}",
                                    _span(file, _template_line(exc, file)), fatal_input=True))
    except RecursionError as exc:  # a macro that calls itself without end
        raise DiagnosticError(error("template stopped: it recurses without end",
                                    _span(file, _template_line(exc, file)), fatal_input=True))
    except MemoryError as exc:
        raise DiagnosticError(error(f"template stopped: it needs more than "
                                    f"{USER_TEMPLATE_MEMORY >> 20} MiB of memory",
                                    _span(file, _template_line(exc, file)), fatal_input=True))
    except jinja2.TemplateSyntaxError as exc:
        raise DiagnosticError(error(f"template syntax error: {exc.message}",
                                    _span(exc.filename or file, exc.lineno), fatal_input=True))
    except jinja2.TemplateNotFound as exc:
        raise DiagnosticError(error(f"template not found: {exc.name}", fatal_input=True))
    except jinja2.UndefinedError as exc:
        raise DiagnosticError(error(f"template uses an undefined value: {exc.message} "
                                    "(see docs/rendering.md for the context)",
                                    _span(file, _template_line(exc, file)), fatal_input=True))
    except jinja2.sandbox.SecurityError as exc:
        raise DiagnosticError(error(f"template not allowed in the sandbox: {exc}",
                                    _span(file, _template_line(exc, file)), fatal_input=True))
    except RenderValueError as exc:
        raise DiagnosticError(error(f"cannot render: {exc}", _span(file, _template_line(exc, file))))
    except jinja2.TemplateError as exc:
        raise DiagnosticError(error(f"template error: {exc}", _span(file, _template_line(exc, file)),
                                    fatal_input=True))
    except (UnicodeDecodeError, OSError) as exc:
        raise DiagnosticError(error(f"cannot read template {file}: {exc}", fatal_input=True))
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        # a template's own expression failed (e.g. adding a string to a number)
        raise DiagnosticError(error(f"template failed: {type(exc).__name__}: {exc}",
                                    _span(file, _template_line(exc, file)), fatal_input=True))


def _render_bounded(env: jinja2.Environment, name: str, context: dict) -> str:
    """Compile and render ``name`` (Jinja folds constant expressions while it compiles),
    stopped past MAX_USER_OUTPUT characters, USER_TEMPLATE_SECONDS or USER_TEMPLATE_MEMORY."""
    chunks, size = [], 0
    with _deadline(USER_TEMPLATE_SECONDS), _memory_limit(USER_TEMPLATE_MEMORY):
        for chunk in env.get_template(name).generate(context):
            size += len(chunk)
            if size > MAX_USER_OUTPUT:
                raise TemplateLimit(f"its output exceeds {MAX_USER_OUTPUT} characters")
            chunks.append(chunk)
    return "".join(chunks)


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise TemplateLimit in the main thread after ``seconds``: a timer signal, the only
    way to stop a loop that calls nothing.  Left out off the main thread, or when another
    timer is running (a caller's own deadline, which then bounds the render)."""
    import signal
    import threading
    if (threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    def expired(signum, frame):
        raise TemplateLimit(f"it ran longer than {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _memory_limit(extra: int):
    """At most ``extra`` more bytes of address space while the template renders: what
    exceeds it is a MemoryError, not gigabytes allocated.  Only on the main thread and only
    while it is the process's one thread: the limit is the process's, and a library
    caller's other threads must not meet it (the output cap and the deadline still hold)."""
    import resource
    import threading
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        mapped = None
    limit = None if mapped is None else mapped + extra
    if (threading.current_thread() is not threading.main_thread() or limit is None
            or threading.active_count() > 1
            or (hard != resource.RLIM_INFINITY and limit > hard)
            or (soft != resource.RLIM_INFINITY and limit > soft)):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def render_builtin(name: str, context: dict) -> str:
    """One of sevm's own templates (``templates/NAME``)."""
    env = builtin_environment()
    return _render(env, name, str(Path(env.loader.searchpath[0]) / name), context)


def render_user(path: str | Path, context: dict) -> str:
    """A user's template file, in the sandbox."""
    template = Path(path)
    if not template.is_file():
        what = "not a regular file" if os.path.exists(template) else "no such file"
        raise DiagnosticError(error(f"--template {path}: {what}", fatal_input=True))
    env = user_environment(template)
    file = str(Path(env.loader.searchpath[0]) / template.name)
    return _render(env, template.name, file, context, bounded=True)
