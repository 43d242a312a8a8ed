"""A stand-in for a kill in in-process resume tests (`killer`)."""


class Killed(Exception):
  """Raised by a progress callback: a stand-in for SIGKILL."""


def killer(marker: str, after: int = 1):
  """A progress callback that raises `Killed` at the `after`-th line with `marker`."""
  seen = []

  def progress(line: str) -> None:
    if marker in line:
      seen.append(line)
      if len(seen) == after:
        raise Killed(line)
  return progress
