"""Stock events leaving the database (docs/events.md): the relay and its sinks.

Write transactions put events in the ``stock_events`` outbox (``stores/sql/outbox.py``).
Everything here runs after commit: ``relay`` numbers them and hands them, in id order, to
the webhook endpoints (``webhooks``, over ``http1``'s keep-alive connections) and NATS
JetStream (``nats_sink``), both ``sink.SinkLoop``s, one relay per database at a time
(``lease``), each sink with a cursor kept in the database (``state``); ``feed`` serves the
pull feed's long poll.
"""
