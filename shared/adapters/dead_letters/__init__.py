"""The `DeadLetterSink` and `DeadLetterBrowser` ports: messages the pipeline gave up on.

Azure: `servicebus_sink` (the poison queue the process stage parks messages in) and
`servicebus_browser` (reads the poison queue and the events queue's dead-letter sub-queue).
Embedded: `embedded` (the embedded queue's dead-letter table, for both). Every reason a
message can be dead-lettered with is in `shared.domain.dead_letter_reasons`.
"""
