"""``jobfn serve MODULE[:ATTR]``: serve a job function from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from jobfn import json_logs as jobfn_logging
from jobfn.errors import ConfigError
from jobfn.function import JobFunction


class TargetError(Exception):
    """``MODULE[:ATTR]`` does not name exactly one job function."""


def job_functions_in(module: ModuleType) -> dict[str, JobFunction]:
    """The job functions a module defines, by attribute name (each object once)."""
    found: dict[str, JobFunction] = {}
    seen: set[int] = set()
    for attr, value in vars(module).items():
        if isinstance(value, JobFunction) and id(value) not in seen:
            seen.add(id(value))
            found[attr] = value
    return found


def load_target(target: str) -> JobFunction:
    """Import ``MODULE[:ATTR]`` and return its job function; :class:`TargetError` if unclear."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise TargetError(f"expected MODULE[:ATTR], e.g. my_function:handler (got {target!r})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"cannot import module {module_name!r}: {exc}") from exc
        raise
    if attr:
        value = getattr(module, attr, None)
        if value is None:
            raise TargetError(f"module {module_name!r} has no attribute {attr!r}")
        if not isinstance(value, JobFunction):
            raise TargetError(
                f"{module_name}:{attr} is not a job function (decorate it with @job_function)"
            )
        return value
    functions = job_functions_in(module)
    if len(functions) == 1:
        return next(iter(functions.values()))
    if not functions:
        raise TargetError(
            f"module {module_name!r} defines no job function (decorate a handler with "
            "@job_function)"
        )
    names = ", ".join(sorted(functions))
    raise TargetError(
        f"module {module_name!r} defines several job functions ({names}); name one: "
        f"jobfn serve {module_name}:{sorted(functions)[0]}"
    )


def parser() -> argparse.ArgumentParser:
    """The ``jobfn`` command line."""
    top = argparse.ArgumentParser(prog="jobfn", description="Run job functions.")
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="serve a job function over HTTP (uvicorn on PORT, default 8080)"
    )
    serve.add_argument("target", metavar="MODULE[:ATTR]", help="where the job function is")
    serve.add_argument("--host", default="0.0.0.0", help="interface to bind (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT, else 8080)")
    serve.add_argument("--log-level", default="info", help="log level (default info)")
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobfn`` console script; returns the exit code."""
    from jobfn.serve import port_from_env, serve

    args = parser().parse_args(argv)
    jobfn_logging.configure(args.log_level.upper())  # start-up warnings as JSON lines too
    try:
        fn = load_target(args.target)
        port = args.port if args.port is not None else port_from_env()
        fn.start()
    except (TargetError, ConfigError) as exc:
        print(f"jobfn serve: {exc}", file=sys.stderr)
        return 2
    serve(fn, host=args.host, port=port, log_level=args.log_level, access_log=args.access_log)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
