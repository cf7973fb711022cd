"""A Tencent Cloud SMS (API 2021-01-11) fake for respx, in Tencent's documented shapes.

Like Tencent it checks every call's `TC3-HMAC-SHA256` signature, with the official SDK's
own code (`tencentcloud.common`), not with our connector's, and the clock (five minutes);
it answers `{"Response": {...}}` with HTTP 200, errors as `Response.Error` and per-number
results in `SendStatusSet`; it sends once per call (SendSms is not idempotent: a repeat
is a second SMS) and lists a number's sends with `PullSmsSendStatusByPhoneNumber`, echoing
`SessionContext` only where the account has that switched on. It builds the delivery
reports and replies Tencent would push, too.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import respx
from tencentcloud.common import credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.sms.v20210111 import sms_client

from tests.fakes.common import hooked_answer

BASE = "https://sms.tencentcloudapi.com"
HOST = "sms.tencentcloudapi.com"
VERSION = "2021-01-11"
BEIJING = timezone(timedelta(hours=8))
AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
                  r"(?P<service>\w+)/tc3_request, SignedHeaders=(?P<signed>[a-z;-]+), "
                  r"Signature=(?P<signature>[0-9a-f]{64})$")

Hook = Callable[[httpx.Request, str], httpx.Response | None]


def sdk_signature(secret_id: str, secret_key: str, *, content_type: str, host: str,
                  body: bytes, timestamp: int, region: str = "ap-guangzhou") -> str:
    """The signature Tencent's SDK computes over this request (its `_get_tc3_signature`)."""
    client = sms_client.SmsClient(credential.Credential(secret_id, secret_key), region)
    req = RequestInternal(host, "POST", "/", header={
        "Content-Type": content_type, "Host": host, "X-TC-Timestamp": str(timestamp)},
        data=body.decode("utf-8"))
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    signature: str = client._get_tc3_signature(None, req, date, "sms", secret_key)
    return signature


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


@dataclass
class TencentSmsFake:
    secret_id: str
    secret_key: str
    sdk_app_id: str
    sign_name: str
    templates: dict[str, int]  # approved template id → how many variables it has
    clock: Callable[[], float] = time.time
    region: str = "ap-guangzhou"
    base: str = BASE
    echo_session_context: bool = True  # "如需开通请联系腾讯云短信小助手"
    sends: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    # Per-number refusals to answer in SendStatusSet, by E.164 number.
    number_codes: dict[str, str] = field(default_factory=dict)
    # Hooks: return a Response to answer in the fake's place (errors, 5xx…).
    before: list[Hook] = field(default_factory=list)

    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{self.base}/").mock(side_effect=self._handle)

    def actions(self) -> list[str]:
        return [r.headers.get("X-TC-Action", "") for r in self.requests]

    # ------------------------------------------------------------- Tencent's checks
    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        action = request.headers.get("X-TC-Action", "")
        refused = self._check(request)
        if refused is not None:
            return refused
        if (answer := hooked_answer(self.before, request, action)) is not None:
            return answer
        try:
            params = json.loads(request.content)
        except ValueError:
            return self.error("FailedOperation.JsonParseFail", "解析请求包体时候失败。")
        if action == "SendSms":
            return self._send(params)
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull(params)
        return self.error("InvalidAction", f"接口`{action}`不存在。")

    def _check(self, request: httpx.Request) -> httpx.Response | None:
        headers = request.headers
        if headers.get("X-TC-Version") != VERSION:
            return self.error("NoSuchVersion", "接口版本不存在。")
        if headers.get("X-TC-Region") != self.region:
            return self.error("InvalidParameterValue", "Region 不正确。")
        match = AUTH.match(headers.get("Authorization", ""))
        if match is None:
            return self.error("AuthFailure.InvalidAuthorization",
                              "请求头部的 Authorization 不符合腾讯云标准。")
        if match["id"] != self.secret_id:
            return self.error("AuthFailure.SecretIdNotFound", "密钥不存在。")
        try:
            timestamp = int(headers["X-TC-Timestamp"])
        except (KeyError, ValueError):
            return self.error("MissingParameter", "缺少参数 X-TC-Timestamp。")
        if abs(self.clock() - timestamp) > 300:
            return self.error("AuthFailure.SignatureExpire", "签名过期。")
        expected = sdk_signature(self.secret_id, self.secret_key,
                                 content_type=headers.get("Content-Type", ""),
                                 host=headers.get("Host", ""), body=request.content,
                                 timestamp=timestamp)
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        if (match["signature"] != expected or match["date"] != date
                or match["service"] != "sms" or match["signed"] != "content-type;host"):
            return self.error("AuthFailure.SignatureFailure", "签名错误。")
        return None

    # ------------------------------------------------------------- SendSms
    def _send(self, params: dict[str, Any]) -> httpx.Response:
        if params.get("SmsSdkAppId") != self.sdk_app_id:
            return self.error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                              "SmsSdkAppId 校验失败。")
        numbers = params.get("PhoneNumberSet") or []
        if not numbers:
            return self.error("MissingParameter.EmptyPhoneNumberSet", "传入的号码列表为空。")
        if len(numbers) > 200:
            return self.error("LimitExceeded.PhoneNumberCountLimit", "手机号个数超过200个。")
        return self.answer({"SendStatusSet": [self._send_one(number, params)
                                              for number in numbers]})

    def _send_one(self, number: str, params: dict[str, Any]) -> dict[str, Any]:
        session = params.get("SessionContext", "")
        status = {"SerialNo": "", "PhoneNumber": number, "Fee": 0, "SessionContext": session,
                  "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
        count = self.templates.get(str(params.get("TemplateId")))
        if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
            return {**status, "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                    "Message": "手机号格式错误。", "IsoCode": "DEF"}
        if number.startswith("+86") and params.get("SignName") != self.sign_name:
            return {**status, "Code": "FailedOperation.SignatureIncorrectOrUnapproved",
                    "Message": "签名未审批或格式错误。"}
        if count is None:
            return {**status, "Code": "FailedOperation.TemplateIncorrectOrUnapproved",
                    "Message": "模板未审批或内容不匹配。"}
        if len(params.get("TemplateParamSet") or []) != count:
            return {**status, "Code": "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                    "Message": "请求内容与审核通过的模板内容不匹配。"}
        if number in self.number_codes:
            return {**status, "Code": self.number_codes[number], "Message": "频率限制"}
        serial = f"2645:{_digits(28)}"
        self.sends.append({"SerialNo": serial, "PhoneNumber": number, "SessionContext": session,
                           "TemplateId": str(params["TemplateId"]),
                           "TemplateParamSet": list(params.get("TemplateParamSet") or []),
                           "SignName": params.get("SignName"), "time": int(self.clock())})
        return {**status, "SerialNo": serial, "Fee": 1}

    # ------------------------------------------------------------- PullSmsSendStatusByPhoneNumber
    def _pull(self, params: dict[str, Any]) -> httpx.Response:
        try:
            begin, limit, offset = int(params["BeginTime"]), int(params["Limit"]), params["Offset"]
            number, app = str(params["PhoneNumber"]), params["SmsSdkAppId"]
        except (KeyError, TypeError, ValueError) as exc:
            return self.error("MissingParameter", f"缺少参数错误。{exc}")
        end = int(params.get("EndTime", self.clock()))
        if begin < self.clock() - 7 * 86400 or begin > end:
            return self.error("InvalidParameterValue.BeginTimeVerifyFail",
                              "参数 BeginTime 校验失败。")
        if offset != 0:
            return self.error("InvalidParameterValue.OffsetVerifyFail", "参数 Offset 校验失败。")
        if not 0 < limit <= 100:
            return self.error("InvalidParameterValue.LimitVerifyFail", "参数 Limit 校验失败。")
        if app != self.sdk_app_id:
            return self.error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                              "SmsSdkAppId 校验失败。")
        found = [s for s in self.sends
                 if s["PhoneNumber"] == number and begin <= s["time"] <= end][:limit]
        return self.answer({"PullSmsSendStatusSet": [self._pulled(s) for s in found]})

    def _pulled(self, send: dict[str, Any]) -> dict[str, Any]:
        number = send["PhoneNumber"]
        return {"UserReceiveTime": send["time"] + 3, "CountryCode": "86",
                "SubscriberNumber": number.removeprefix("+86"), "PhoneNumber": number,
                "SerialNo": send["SerialNo"], "ReportStatus": "SUCCESS",
                "Description": "DELIVRD",
                "SessionContext": send["SessionContext"] if self.echo_session_context else ""}

    # ------------------------------------------------------------- answers
    @staticmethod
    def answer(response: dict[str, Any]) -> httpx.Response:
        body = {"Response": {**response, "RequestId": secrets.token_hex(16)}}
        return httpx.Response(200, json=body)

    @staticmethod
    def error(code: str, message: str, status: int = 200) -> httpx.Response:
        body = {"Response": {"Error": {"Code": code, "Message": message},
                             "RequestId": secrets.token_hex(16)}}
        return httpx.Response(status, json=body)

    # ------------------------------------------------------------- what Tencent pushes
    def status_report(self, send: dict[str, Any], *, status: str = "SUCCESS",
                      errmsg: str = "DELIVRD", description: str = "用户短信送达成功",
                      ) -> dict[str, Any]:
        """One entry of 短信下发状态通知 (a callback carries a JSON array of them)."""
        number = send["PhoneNumber"]
        at = datetime.fromtimestamp(send["time"] + 3, BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        report = {"user_receive_time": at, "nationcode": "86",
                  "mobile": number.removeprefix("+86"), "report_status": status,
                  "errmsg": errmsg, "description": description, "sid": send["SerialNo"]}
        if self.echo_session_context:
            report["ext"] = send["SessionContext"]
        return report

    def reply(self, number: str, text: str, at: int | None = None) -> dict[str, Any]:
        """短信回复: what Tencent pushes when a customer answers an SMS."""
        return {"extend": "", "mobile": number.removeprefix("+86"), "nationcode": "86",
                "sign": self.sign_name, "text": text,
                "time": int(self.clock()) if at is None else at}
