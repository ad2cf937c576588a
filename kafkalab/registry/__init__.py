"""A Schema Registry with Confluent's REST API, storing every schema in the compacted
`_schemas` topic: `core` (subjects, versions, ids, configs; pure), `compatibility` (the
levels over Avro's reader/writer rules), `records` (the topic's key and value layouts),
`rest` (the API's routes and error bodies), `wire` (magic byte + schema id), `server` (the
process), `launcher` (its place in a Cluster)."""
