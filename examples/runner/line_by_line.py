"""A C program's printf() output arrives line by line, as it is written
(distexprunner's buffered_stdout example).

Into a pipe, stdio buffers whole blocks, so without help every line would
arrive at once when the program exits. The node runs commands under stdbuf's
line-buffering preload, so each line shows up while the program still runs.
"""

import time

import config

from shoal.runner import *  # noqa: F403

server_list = ServerList(Server("node01", "127.0.0.1", config.SERVER_PORT))  # noqa: F405

TICKS = r"""
#include <stdio.h>
#include <unistd.h>

int main(void) {
    for (int i = 0; i < 3; i++) {
        printf("tick %d\n", i);
        usleep(400000);
    }
    return 0;
}
"""


class Arrivals:
    """An output handler that notes when each line came."""

    def __init__(self):
        self.start = time.monotonic()
        self.times = []

    def __call__(self, line):
        self.times.append(round(time.monotonic() - self.start, 1))
        print(f"{self.times[-1]:4.1f} s  {line}", end="")


@reg_exp(servers=server_list)  # noqa: F405
def line_by_line(servers):
    s = servers[0]
    compile_cmd = s.run_cmd("gcc -xc - -o ticks")
    compile_cmd.stdin(TICKS, close=True)
    compile_cmd.wait()

    arrivals = Arrivals()
    s.run_cmd("./ticks", stdout=arrivals).wait()
    # Three lines 0.4 s apart: they arrived over 0.8 s, not all at the end.
    assert arrivals.times[-1] - arrivals.times[0] >= 0.6, arrivals.times
    s.run_cmd("rm -f ticks").wait()
