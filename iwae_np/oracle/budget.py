"""What a fixture or a statistical check will cost before it is computed: memory and time, estimated, and a
one-line refusal when the estimate is beyond this machine.

The work of every oracle computation is a forward and backward pass over ``rows = k * B`` samples (times the
number of draws in statistical mode), each through every layer of the model: ``width = D + sum(d_l) + every
tanh width``. Measured on this project's machine (2 shared cores; ``make_fixture`` of the four architectures
at k * B = 4,000 to 300,000): the peak memory is 3 to 4 times ``8 * rows * width`` bytes (the activations
autograd keeps for nine gradients) and the time 0.4 to 1.8 microseconds per ``rows * width``. The estimates
below take 6 times and 2 microseconds, so that they err on the large side.
"""
import os

__all__ = ["MEMORY_FACTOR", "SECONDS_PER_ROW_UNIT", "MAX_SECONDS", "model_width", "estimate", "available_memory",
           "refuse_if_too_large", "format_bytes", "format_seconds"]

#: Peak bytes per float64 of ``rows * width`` (measured 3 to 4).
MEMORY_FACTOR = 6
#: Seconds per ``rows * width`` (measured 0.4e-6 to 1.8e-6 on a loaded 2-core machine).
SECONDS_PER_ROW_UNIT = 2e-6
#: The longest computation the oracle starts without being asked in a smaller piece: a day.
MAX_SECONDS = 24 * 3600.0
#: The share of the available memory a computation may plan to use (the machine is shared).
MEMORY_SHARE = 0.5


def model_width(x_dim, latent_dims, q_hidden, p_hidden):
    """``D + sum(d_l) + every tanh width`` of the recognition and generative networks."""
    return int(x_dim + sum(latent_dims) + sum(sum(h) for h in q_hidden) + sum(sum(h) for h in p_hidden))


def estimate(rows, width, n_params=0, copies=20):
    """``(bytes, seconds)`` of a computation over ``rows`` samples of a model of ``width``, keeping ``copies``
    parameter-sized arrays (gradients, their sums) of ``n_params`` float64 each."""
    return (MEMORY_FACTOR * 8 * rows * width + 8 * copies * n_params, SECONDS_PER_ROW_UNIT * rows * width)


def available_memory():
    """Bytes of memory available to a new computation (``MemAvailable`` of /proc/meminfo, else the physical
    memory), or None when neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(n):
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def format_seconds(s):
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} s"


def refuse_if_too_large(what, nbytes, seconds, advice, error=ValueError, available=None):
    """Raise ``error`` with one line when ``nbytes`` is above :data:`MEMORY_SHARE` of the available memory or
    ``seconds`` above :data:`MAX_SECONDS`; ``what`` names the computation, ``advice`` says what to change."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > MEMORY_SHARE * available:
        raise error(f"{what} would need about {format_bytes(nbytes)} of memory ({format_bytes(available)} available) "
                    f"and {format_seconds(seconds)}: refused before computing anything; {advice}")
    if seconds > MAX_SECONDS:
        raise error(f"{what} would take about {format_seconds(seconds)} (and {format_bytes(nbytes)} of memory): "
                    f"refused before computing anything; {advice}")
