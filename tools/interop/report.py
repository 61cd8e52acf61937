"""Named checks with a verdict and the figures behind it, printed as they are decided and
summed up at the end ("N passed, N failed")."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    ok: bool
    detail: str


class Report:
    def __init__(self, out=sys.stdout):
        self.results: list[Result] = []
        self.out = out
        self.t0 = time.monotonic()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.t0:5.1f}s"

    def check(self, name: str, ok: bool, detail: str) -> bool:
        """Record and print one check: `name` says what is checked, `detail` what was seen."""
        self.results.append(Result(name, bool(ok), detail))
        print(f"{self.elapsed()} {'PASS' if ok else 'FAIL'} {name}: {detail}", file=self.out,
              flush=True)
        return bool(ok)

    def info(self, text: str) -> None:
        print(f"{self.elapsed()} {text}", file=self.out, flush=True)

    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        failed = self.failed()
        lines = []
        if failed:
            lines.append("interop: failed checks:")
            lines += [f"  - {r.name}: {r.detail}" for r in failed]
        lines.append(f"interop: {len(self.results) - len(failed)} passed, {len(failed)} failed")
        return "\n".join(lines)
