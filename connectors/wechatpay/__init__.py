"""WeChat Pay (API v3) payment connector: domestic refunds, their status, and refund
notifications."""

from connectors.wechatpay.connector import WeChatPayConnector, WeChatPaySettings

__all__ = ["WeChatPayConnector", "WeChatPaySettings"]
