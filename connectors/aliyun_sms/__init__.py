"""Aliyun SMS (阿里云短信) notifier: approved templates sent with dysmsapi `SendSms`, signed
V3 (`ACS3-HMAC-SHA256`); sends looked up with `QuerySendDetails`; receipts and replies by
Aliyun's HTTP batch push to a URL that ends in the shop's secret."""

from refundbridge.connectors.aliyun_sms.connector import AliyunSmsConnector, AliyunSmsSettings

__all__ = ["AliyunSmsConnector", "AliyunSmsSettings"]
