"""`make bench`: the pipeline's throughput and latency on this machine, beside a bare endpoint."""
