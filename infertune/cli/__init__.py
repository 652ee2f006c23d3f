"""The `infertune` command line. Thin: commands parse input and call library functions.

Nothing in infertune imports this package; only the console script and the tests do.
"""

from __future__ import annotations

import sys

import typer

from . import (
    autotune_cmd, bench_cmd, calibrate_cmd, check_cmd, db_cmd, demo_cmd, embed_cmd, env_cmd, generate_cmd, kernels_cmd,
    models_cmd, profile_cmd, report_cmd, serve_cmd, tuner_cmd,
)
from .common import click_exceptions, single_line

app = typer.Typer(
    name="infertune",
    help="Profile and autotune Triton kernels for LLM and embedding inference on NVIDIA GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("env")(env_cmd.env)
app.command("kernels")(kernels_cmd.kernels)
app.command("check")(check_cmd.check)
app.command("bench")(bench_cmd.bench)
app.command("autotune")(autotune_cmd.autotune)
app.command("generate")(generate_cmd.generate)
app.command("demo")(demo_cmd.demo)
app.command("calibrate")(calibrate_cmd.calibrate)
app.command("embed")(embed_cmd.embed)
app.command("serve")(serve_cmd.serve)
app.add_typer(tuner_cmd.app, name="tuner")
app.add_typer(db_cmd.app, name="db")
app.add_typer(models_cmd.app, name="models")
app.add_typer(profile_cmd.app, name="profile")
app.command("report")(report_cmd.report)


def ascii_numbers(command) -> None:
    """Refuse a number written in other digits than ASCII 0-9 ('١٢' or a full-width '１２',
    which int() and float() would read as 12), in every int and float parameter of `command`
    and its subcommands: a one-line usage error, not a silent reading."""
    bad_parameter = click_exceptions().BadParameter
    for param in getattr(command, "params", []):
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(descriptor, "annotation", None) not in (int, float):
            continue

        def process_value(ctx, value, _original=param.process_value, _param=param):
            if isinstance(value, str) and not value.isascii():
                raise bad_parameter(f"{value!r} is not a number written in ASCII digits", ctx=ctx, param=_param)
            return _original(ctx, value)

        param.process_value = process_value
    for sub in getattr(command, "commands", {}).values():
        ascii_numbers(sub)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors become one line on stderr and exit code 2."""
    command = typer.main.get_command(app)
    ascii_numbers(command)
    click = click_exceptions()
    try:
        code = command.main(args=argv, prog_name="infertune", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        typer.echo(f"error: {single_line(exc.format_message())}{hint}", err=True)
        sys.exit(2)
    except (getattr(click, "Abort", None) or getattr(typer, "Abort", KeyboardInterrupt)):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `infertune ... | head`: the reader left; nothing more to say
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
