"""Fault-injection runs (`python -m chaos`, `make chaos`): flaky webhook receivers, a worker SIGKILLed mid-burst,
the broker restarted mid-stream on S3 storage, and 10,000 hostile inputs. Not part of `make test`.

Each scenario runs the real service (`python -m warning.cli run`) as a subprocess against real aiohttp receivers
and prints expected / delivered / lost / duplicates / time to recover. See chaos/README.md.
"""
