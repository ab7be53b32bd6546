"""The CLI commands, one module per command; uslbench/cli.py adds them to the group. A command
parses its options, calls one library function and prints; it imports that library inside the
command so that `--help` and the light commands start without torch."""
