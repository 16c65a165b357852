"""The bottom layer every stage may import: wire records, topic names, regions, settings, metrics and the topic
mirror. It imports nothing from ``ingest``, ``alerts``, ``indices`` or the rest of ``warning``."""
