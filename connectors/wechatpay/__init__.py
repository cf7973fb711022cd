"""WeChat Pay (API v3) payment connector: domestic refunds, their status, and refund
notifications."""

from refundbridge.connectors.wechatpay.connector import WeChatPayConnector, WeChatPaySettings

__all__ = ["WeChatPayConnector", "WeChatPaySettings"]
