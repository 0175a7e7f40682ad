"""What only runs or exercises the function app on one machine; never deployed.

- `host`: the local host, which serves the app's functions with the Functions host's rules;
- `cli`: the `cloudscale` command;
- `loadtest`: the open-loop load generator;
- `bench`: `make bench`, the benchmark;
- `compare_locks`: the lock check's comparison (`make lock-check`).
"""
