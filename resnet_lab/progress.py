"""One progress line per long job, in a notebook and in a terminal.

In a Jupyter kernel the line is a display that is updated in place (`display_id`), so a notebook
executed headless keeps the final state ("100/100 epochs") in its saved output instead of a
widget frozen at 0%. Elsewhere it is a `tqdm` bar on stderr.
"""

import time


def _in_notebook():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class ProgressBar:
    """`total` steps of a job named `desc`: `update(n, postfix)`, `write(line)`, `close()`.

    Args:
        total: Number of steps.
        desc: What is running (e.g. the run name).
        unit: What a step is (e.g. `"epoch"`, `"img"`).
        every: In a notebook, redraw every `every` steps (and at the end).
    """

    WIDTH = 24

    def __init__(self, total, desc, unit, every=1):
        self.total, self.desc, self.unit, self.every = total, desc, unit, max(1, every)
        self.n, self.postfix, self._start = 0, "", time.perf_counter()
        self._handle = self._tqdm = None
        if _in_notebook():
            from IPython.display import Pretty, display

            self._pretty = Pretty
            self._handle = display(Pretty(self.text()), display_id=True)
        else:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=True)

    def text(self):
        """The line as shown: name, bar, count, elapsed seconds, postfix."""
        done = self.WIDTH * self.n // max(self.total, 1)
        bar = "#" * done + "." * (self.WIDTH - done)
        return (
            f"{self.desc}: [{bar}] {self.n}/{self.total} {self.unit}, "
            f"{time.perf_counter() - self._start:.0f} s{self.postfix}"
        )

    def update(self, n=1, postfix=None):
        """Advance by `n` steps; `postfix` is a dict shown after the count."""
        self.n += n
        if postfix:
            self.postfix = "; " + ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(n)
        elif self.n % self.every == 0 or self.n == self.total:
            self._handle.update(self._pretty(self.text()))

    def write(self, line):
        """Print a line without breaking the bar."""
        if self._tqdm is not None:
            self._tqdm.write(line)
        else:
            print(line, flush=True)

    def close(self):
        """Finish: the last state stays on screen."""
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._handle is not None:
            self._handle.update(self._pretty(self.text()))
