"""PySpark baseline for the spill benchmark: the jobs of examples/spill.rs.

    python3 benches/spill_pyspark.py JOB N [--memory 512m] [--partitions P]

JOB is `words`, `sort`, `join` or `sql-group`, each the same workload as
the Rust example (data generated inside the tasks, partition p making the
numbers p, p + P, p + 2P, ...) printing the same one line on stdout:

- `words N`:     `words: keys=N checksum=N(N-1)`
- `sort N`:      `sort: records=N ordered=true`
- `join N`:      `join: pairs=N checksum=C`
- `sql-group N`: `sql-group: groups=N rows=2N`

words, sort and join use the RDD API, as riffle's Dataset API is RDD-like;
sql-group uses Spark SQL. Spark runs in local[2] with the driver heap set by
--memory (in local mode the executors live in the driver JVM, so that is
the memory the wide operations get). stderr gets `time: X.XX s`, the time
of the job alone, without starting or stopping the JVM. PySpark comes from
benches/pyspark_setup.sh.
"""

import argparse
import os
import sys
import time
from operator import add


def add_pairs(a, b):
    return (a[0] + b[0], a[1] + b[1])


def numbers(sc, count, partitions):
    """Numbers 0..count, made inside the tasks the way spill.rs makes them,
    so that no data travels from the driver."""

    def mine(first):
        return range(first, count, partitions)

    return sc.parallelize(range(partitions), partitions).flatMap(mine)


def words(spark, n, partitions):
    sc = spark.sparkContext
    counts = (
        numbers(sc, 2 * n, partitions)
        .map(lambda i: ("w%010d" % (i % n), 1))
        .reduceByKey(add, partitions)
    )
    # fold, not reduce: an empty input gives (0, 0) as in spill.rs.
    keys, checksum = counts.map(lambda wc: (1, int(wc[0][1:]) * wc[1])).fold(
        (0, 0), add_pairs
    )
    return f"words: keys={keys} checksum={checksum}"


def check_run(records):
    """One sorted partition's (first key, last key, records, in order)."""
    first = last = None
    count = 0
    ordered = True
    for k, _ in records:
        if last is not None and last > k:
            ordered = False
        if first is None:
            first = k
        last = k
        count += 1
    yield (first, last, count, ordered)


def sort(spark, n, partitions):
    sc = spark.sparkContext
    # Records are already (key, payload) pairs, so sortByKey is spill.rs's
    # sort_by on the key; sortBy would key every record a second time.
    runs = (
        numbers(sc, n, partitions)
        .map(lambda i: ((i * 7919) % n, "%040d" % i))
        .sortByKey(True, partitions)
        .mapPartitions(check_run)
        .collect()
    )
    runs = [r for r in runs if r[2] > 0]
    records = sum(r[2] for r in runs)
    ordered = all(r[3] for r in runs) and all(
        a[1] < b[0] for a, b in zip(runs, runs[1:])
    )
    return f"sort: records={records} ordered={str(ordered).lower()}"


def join(spark, n, partitions):
    sc = spark.sparkContext

    def side(tag):
        return numbers(sc, n, partitions).map(lambda i: (i, "%d-%030d" % (tag, i)))

    pairs, checksum = (
        side(1)
        .join(side(2), partitions)
        .map(lambda kv: (1, kv[0] * (len(kv[1][0]) + len(kv[1][1]))))
        .fold((0, 0), add_pairs)
    )
    return f"join: pairs={pairs} checksum={checksum}"


def sql_group(spark, n, partitions):
    from pyspark.sql import functions as F

    # spark.range makes the rows inside the tasks in the JVM, as spill.rs
    # makes its table's rows in native code; going through Python rows would
    # time pickling rather than the GROUP BY.
    rows = spark.range(0, 2 * n, 1, partitions).select(
        (F.col("id") % n).alias("k"), F.col("id").alias("v")
    )
    rows.createOrReplaceTempView("t")
    g = spark.sql(
        "SELECT count(*) AS groups, CAST(sum(c) AS BIGINT) AS rows "
        "FROM (SELECT k, count(*) AS c, max(v) AS m FROM t GROUP BY k)"
    ).collect()[0]
    # sum over no groups is NULL; spill.rs's engine would print 0.
    return f"sql-group: groups={g['groups']} rows={g['rows'] or 0}"


JOBS = {"words": words, "sort": sort, "join": join, "sql-group": sql_group}


def stop(spark):
    """Stops Spark and waits for the JVM to exit. Python does not wait for
    its children on exit, and a child never waited for is left out of the
    caller's rusage: `/usr/bin/time` would then report the Python driver's
    peak, not the JVM's."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        gateway.shutdown()
        # The gateway JVM exits when its stdin closes.
        proc.stdin.close()
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("n", type=int)
    parser.add_argument("--memory", default="512m", help="driver heap (default 512m)")
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()

    # Workers must run this interpreter (and see the same pyspark), not
    # whatever `python3` is first on the PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName(f"spill-{args.job}")
        .config("spark.driver.memory", args.memory)
        .config("spark.default.parallelism", str(args.partitions))
        .config("spark.sql.shuffle.partitions", str(args.partitions))
        .config("spark.ui.enabled", "false")
        # The stage progress bar would fill stderr, which holds the result.
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("WARN")
        start = time.perf_counter()
        line = JOBS[args.job](spark, args.n, args.partitions)
        elapsed = time.perf_counter() - start
    finally:
        stop(spark)
    print(line, flush=True)
    print(f"time: {elapsed:.2f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
