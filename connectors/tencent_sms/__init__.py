"""Tencent Cloud SMS (腾讯云短信, SendSms API 2021-01-11, TC3-HMAC-SHA256) notifier: sends
the customer's SMS by approved template, finds a send again, and reads Tencent's delivery
reports and opt-out replies."""

from refundbridge.connectors.tencent_sms.connector import TencentSmsConnector, TencentSmsSettings

__all__ = ["TencentSmsConnector", "TencentSmsSettings"]
