"""Log records carry the reply they are about, when there is one: log.info(..., extra={"reply_id": id})."""

import logging


class ReplyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        reply_id = getattr(record, "reply_id", None)
        record.reply = f" reply={reply_id}" if reply_id is not None else ""
        return True
