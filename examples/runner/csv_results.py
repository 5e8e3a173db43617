"""Turning a benchmark's output into CSV rows (distexprunner's csv_parser example).

Each run's output goes to its own CSVGenerator (IterClassGen makes and keeps
them); every generator then appends one row to results.csv, which gets its
header once.
"""

import config

from shoal.runner import *  # noqa: F403

server_list = ServerList(Server("node01", "127.0.0.1", config.SERVER_PORT))  # noqa: F405

# A stand-in benchmark: per-thread throughput lines, printed out of order.
BENCH = (
    'for i in 3 1 2; do echo "thread=$i ops=$((i * {scale}))"; done; '
    'echo "latency_us=12"; echo "latency_us=7"'
)


@reg_exp(servers=server_list, params=ParameterGrid(scale=[10, 100]))  # noqa: F405
def csv_results(servers, scale):
    csvs = IterClassGen(  # noqa: F405
        CSVGenerator,  # noqa: F405
        r"latency_us=(?P<last_latency_us>\d+)",  # a plain regex keeps the last value
        CSVGenerator.Sum(r"ops=(?P<total_ops>\d+)"),  # noqa: F405
        CSVGenerator.SortedArray(r"thread=(?P<i>\d+) ops=(?P<ops_by_thread>\d+)"),  # noqa: F405
        CSVGenerator.Array(r"latency_us=(?P<latencies_us>\d+)"),  # noqa: F405
        scale=scale,  # a fixed column: the run's parameter
    )
    for s in servers:
        s.run_cmd(BENCH.format(scale=scale), stdout=next(csvs)).wait()
    for csv in csvs:
        log("row:", csv.row)  # noqa: F405
        csv.write("results.csv")
