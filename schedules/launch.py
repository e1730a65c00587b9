"""pii-blur with every argument given as --name=value, for launchers that pass only options.

Dataflow Flex Templates and Airflow's BeamRunPythonPipelineOperator run a
Python file with `--name=value` for each parameter, while pii-blur takes
INPUT, OUTPUT and MIN_PERCENTAGE_PROBABILITY by position. This turns
--input, --output and --min_probability into those, pii-blur's own options
into their spelling (--max_pixels=5 -> --max-pixels 5; --force=true ->
--force, --force=false -> nothing), and passes the rest (Beam's options) on
unchanged. Needs pii-blur installed in the Python that runs it.
"""

from __future__ import annotations

import sys

POSITIONAL = ("input", "output", "min_probability")
FLAGS = ("force",)
# pii-blur's options that a schedule may set (flags in FLAGS, the rest take a value).
OPTIONS = ("classes", "models", "device", "report", "projection", "mode", "max_pixels", "force",
           "summary_json", "workers", "threads")


def translate(argv: list[str]) -> list[str]:
    """`--input=A --output=B --min_probability=40 --mode=pixelate --runner=X` -> `A B 40 --mode pixelate --runner=X`.

    Raises:
        SystemExit: --input or --output is missing.
    """
    positional: dict[str, str] = {}
    options: list[str] = []
    rest: list[str] = []
    for argument in argv:
        name, has_value, value = argument[2:].partition("=") if argument.startswith("--") else ("", False, "")
        key = name.replace("-", "_")
        if key in POSITIONAL and has_value:
            positional[key] = value
        elif key in FLAGS and has_value:
            if value.strip().lower() in ("true", "1", "yes"):
                options.append(f"--{key.replace('_', '-')}")
        elif key in OPTIONS and has_value:
            options += [f"--{key.replace('_', '-')}", value]
        else:
            rest.append(argument)
    missing = [name for name in ("input", "output") if not positional.get(name)]
    if missing:
        raise SystemExit(f"pii-blur launch: missing {', '.join('--' + name for name in missing)}")
    ordered = [positional["input"], positional["output"]]
    if positional.get("min_probability"):
        ordered.append(positional["min_probability"])
    return ordered + options + rest


def main(argv: list[str] | None = None) -> int:
    from pii_blur import cli   # imported here so that translate() can be used without pii-blur installed
    return cli.main(translate(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
