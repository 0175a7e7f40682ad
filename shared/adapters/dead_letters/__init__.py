"""The `DeadLetterSink` and `DeadLetterBrowser` ports: messages the pipeline gave up on.

Azure: `servicebus_sink` (the poison queue the process stage parks messages in) and
`servicebus_browser` (reads the poison queue and the events queue's dead-letter sub-queue,
through `servicebus_receivers`; `servicebus_messages` maps what it reads and builds replays).
Embedded: `embedded` (the embedded queue's dead-letter table, for both ports).
`test_dead_letter_contract` runs the same path (park, list, replay) through both. Every
reason a message can be dead-lettered with is in `shared.domain.dead_letter_reasons`.
"""
