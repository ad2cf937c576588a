"""kafkalab: learn how Apache Kafka really works by running and breaking a real cluster."""
