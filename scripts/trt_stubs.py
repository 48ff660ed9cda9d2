"""Copy the installed ``tensorrt-stubs`` into a folder mypy can use (MYPYPATH).

The package ships ``tensorrt/__init__.pyi`` without a ``py.typed`` marker (mypy skips it)
and a few generated lines that are not valid Python (a parameter named ``in``, a
non-default parameter after defaults). This writes fixed copies to ``OUT``.
Usage: python trt_stubs.py OUT  ->  MYPYPATH=OUT mypy ...
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path


def main(out: str) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "tensorrt" / "__init__.pyi").is_file():
        sys.exit(f"tensorrt-stubs not installed in {site}: pip install --no-deps tensorrt-stubs")
    for pkg in ("tensorrt", "tensorrt_bindings"):
        for src in (site / pkg).glob("*.pyi"):
            text = src.read_text()
            text = re.sub(r"\bin: ", "in_: ", text)  # 'in' is a keyword
            text = text.replace(
                "power: Weights = None, channel_axis: int)",
                "power: Weights = None, channel_axis: int = ...)",
            )
            text = text.replace("import tensorrt_libs as tensorrt_libs\n", "")
            if pkg == "tensorrt_bindings" and src.name == "tensorrt.pyi":
                # the module-level ``bool: DataType`` shadows the builtin in annotations
                text = "import builtins\n" + re.sub(
                    r"(->|:|\[|,|\|) ?bool\b", r"\1 builtins.bool", text
                )
            # generated stubs: keep their (many) internal inconsistencies out of the report
            text = "# mypy: ignore-errors\n" + text
            dest = Path(out) / pkg / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1])
