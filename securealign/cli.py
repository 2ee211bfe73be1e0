"""`python -m securealign <command>`: a thin dispatcher.

Each command lives in the module that owns its work, as `main(argv) -> int`; this file only maps names to
them, so adding a command never means editing another module's argument parsing.
"""

from __future__ import annotations

import importlib
import logging
import sys

# command -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("securealign.models.zoo", "list the model zoo with dims, families, sizes and install state"),
    "setup": (
        "securealign.models.setup",
        "one-time preparation: assemble split archives, convert GGUF models (cached)",
    ),
    "datasets": ("securealign.datasets", "list the datasets with sizes and class counts"),
    "precompute": (
        "securealign.experiments.precompute",
        "compute maps, heads, similarity matrices and metrics into assets/",
    ),
    "report": ("securealign.experiments.report", "print the paper-style result tables from assets/"),
    "serve": ("securealign.crypto.server", "run the encrypted-inference provider as an HTTP service"),
    "fit": ("securealign.crypto.fit_client", "fit a map securely against a running provider (paper or sealed)"),
    "generate": ("securealign.generation.cli", "cross-model text generation from a prompt"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m securealign <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module; unknown commands print the list of valid ones."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    # the library logs its one-time work (model conversions) at INFO: a command shows it (and only securealign's:
    # httpx, for one, logs every request at INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[securealign] %(message)s"))
    logging.getLogger("securealign").addHandler(handler)
    logging.getLogger("securealign").setLevel(logging.INFO)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
