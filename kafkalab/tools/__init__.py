"""Command-line tools over kafkalab's files (dump-log)."""
