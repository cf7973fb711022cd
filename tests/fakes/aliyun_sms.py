"""An Aliyun SMS (dysmsapi 2017-05-25) fake for respx that speaks Aliyun's wire format.

Like the service it
- checks every call's V3 signature (`ACS3-HMAC-SHA256`) by recomputing it with Alibaba
  Cloud's own signer (`alibabacloud_tea_openapi.utils.Utils.get_authorization`) over the
  headers the call says it signed, the decoded query and `x-acs-content-sha256`, which must
  be the body's hash; refuses an unknown AccessKey, a stale `x-acs-date` (15 minutes) and a
  nonce it has seen (`SignatureNonceUsed`), with the documented codes and HTTP statuses;
- `SendSms`: checks the number (mainland 11 digits with or without +/+86/0086/86, else
  country code and number), the approved signature and template, and `TemplateParam` (a
  JSON string of string values naming every variable of the template); answers `OK` with a
  `BizId`, or the `isv.*` code; may hold a per-number limit (`isv.BUSINESS_LIMIT_CONTROL`);
- `QuerySendDetails`: a number's sends of one Beijing day, newest first, paged, with
  `SendStatus` 1 (waiting), 2 (failed), 3 (delivered) and our `OutId`, no BizId;
- writes the pushes Aliyun would send: SmsReport receipts and SmsUp replies.

Sends are kept in memory (or a JSON state file, for several processes).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import phonenumbers
import respx
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from darabonba.request import DaraRequest

from tests.fakes.common import exclusive, hooked_answer, read_state, write_state

ENDPOINT = "https://dysmsapi.aliyuncs.com"
ACCESS_KEY_ID = "LTAI5tQw8Rb3kVn9ZpXy2mJd"
ACCESS_KEY_SECRET = "q7Hc2LmR9vTx4KpW8sNb3FzY6gJd1A"
SIGN_NAME = "康护医疗器械"
VERSION = "2017-05-25"
BEIJING = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_TOLERANCE = timedelta(minutes=15)
REQUIRED_SIGNED = ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                   "x-acs-signature-nonce", "x-acs-content-sha256")
AUTHORIZATION = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),"
                           r"Signature=([0-9a-f]{64})")
MAINLAND = re.compile(r"(?:\+86|0086|86|\+)?(1[3-9]\d{9})")
VARIABLE = re.compile(r"\$\{(\w+)\}")

# Approved templates of the test account: code → content with ${variables}.
TEMPLATES = {
    "SMS_465320001": "您的退款申请已收到：订单${order_id}，金额${amount}${currency}，"
                     "申请编号${case_id}。",
    "SMS_465320002": "订单${order_id}的退款申请已通过，金额${amount}${currency}。"
                     "进度 https://shop.kanghu.cn/s/${status_path}",
    "SMS_465320003": "很抱歉，订单${order_id}的退款申请未通过，申请编号${case_id}。",
    "SMS_465320004": "订单${order_id}的退款${amount}${currency}已退回原支付方式。",
}

Hook = Callable[[httpx.Request], httpx.Response | None]


def request_id() -> str:
    return str(uuid.uuid4()).upper()


def answer(code: str, message: str, status: int = 200, **fields: Any) -> httpx.Response:
    """An answer as dysmsapi writes it: business codes (`OK`, `isv.*`) with HTTP 200, the
    gateway's (`SignatureDoesNotMatch`, `Throttling.User`) with a 4xx and `HostId`."""
    body: dict[str, Any] = {"RequestId": request_id(), "Code": code, "Message": message,
                            **fields}
    if status >= 400:
        body |= {"HostId": "dysmsapi.aliyuncs.com",
                 "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}"
                              "&product=Dysmsapi"}
    return httpx.Response(status, json=body)


def aliyun_number(raw: str) -> str | None:
    """The number as Aliyun records it (mainland: 11 digits), or None if it is not one."""
    raw = raw.strip()
    if mainland := MAINLAND.fullmatch(raw):
        return mainland.group(1)
    if not raw.isdigit() or raw.startswith("86"):
        return None
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse("+" + raw))
    except phonenumbers.NumberParseException:
        return None
    return raw if valid else None


class AliyunSmsFake:
    def __init__(self, *, endpoint: str = ENDPOINT,
                 keys: dict[str, str] | None = None, sign_names: Iterable[str] = (SIGN_NAME,),
                 templates: dict[str, str] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 state_file: Path | None = None) -> None:
        self.endpoint = httpx.URL(endpoint)
        self.keys = dict(keys or {ACCESS_KEY_ID: ACCESS_KEY_SECRET})
        self.sign_names = frozenset(sign_names)
        self.templates = dict(templates or TEMPLATES)
        self.now = now
        self.state_file = state_file
        self.sends: list[dict[str, Any]] = []  # newest last
        self.nonces: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.calls: list[dict[str, str]] = []  # verified calls: the action and its params
        self.per_minute_limit: int | None = None  # per number and template, like Aliyun's
        # Hooks: return a Response to answer instead of the fake (503s, refusals, garbage).
        self.before_call: list[Hook] = []
        # Hooks run after a send was stored, before its answer goes out.
        self.after_send: list[Callable[[dict[str, Any]], httpx.Response | None]] = []

    def install(self, router: respx.MockRouter) -> None:
        port: dict[str, Any] = {} if self.endpoint.port is None else {"port": self.endpoint.port}
        router.route(method="POST", scheme=self.endpoint.scheme, host=self.endpoint.host,
                     path="/", **port).mock(side_effect=self.handle)

    # ------------------------------------------------------------- the service
    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        hooked = hooked_answer(self.before_call, request)
        if hooked is not None:
            return hooked
        params = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
        refused = self.check_signature(request, params)
        if refused is not None:
            return refused
        action = request.headers["x-acs-action"]
        self.calls.append({"Action": action, **params})
        with exclusive(self.state_file):
            self._load()
            try:
                if action == "SendSms":
                    return self._send(params)
                if action == "QuerySendDetails":
                    return self._query(params)
                return answer("InvalidAction.NotFound",
                              f"Specified api is not found, please check your url and "
                              f"method. Action: {action}", 404)
            finally:
                self._save()

    def check_signature(self, request: httpx.Request, params: dict[str, str]
                        ) -> httpx.Response | None:
        """None if the call is signed as Aliyun checks it, else Aliyun's refusal."""
        match = AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return answer("IncompleteSignature", "The request signature does not conform "
                                                 "to Aliyun standards.", 400)
        key_id, signed, _ = match.groups()
        names = signed.split(";")
        missing = [h for h in REQUIRED_SIGNED if h not in names or h not in request.headers]
        if missing or names != sorted(names):
            return answer("IncompleteSignature", f"headers not signed: {missing}", 400)
        body_hash = request.headers["x-acs-content-sha256"]
        if body_hash != hashlib.sha256(request.content).hexdigest():
            return answer("SignatureDoesNotMatch", "x-acs-content-sha256 is not the hash "
                                                   "of the body.", 400)
        if key_id not in self.keys:
            return answer("InvalidAccessKeyId.NotFound", "Specified access key is not "
                                                         "found.", 404)
        if request.headers["x-acs-version"] != VERSION:
            return answer("InvalidVersion", "Specified parameter Version is not valid.", 400)
        try:
            date = datetime.strptime(request.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return answer("InvalidTimeStamp.Format", "Specified time stamp or date value is "
                                                     "not well formatted.", 400)
        if abs(date.replace(tzinfo=UTC) - self.now()) > DATE_TOLERANCE:
            return answer("InvalidTimeStamp.Expired", "Specified time stamp or date value "
                                                      "is expired.", 400)
        expected = self.sdk_authorization(request, params, names, key_id)
        if expected != request.headers["Authorization"]:
            return answer("SignatureDoesNotMatch", "Specified signature does not match our "
                                                   "calculation.", 400)
        nonce = request.headers["x-acs-signature-nonce"]
        if nonce in self.nonces:
            return answer("SignatureNonceUsed", "Specified signature nonce was used "
                                                "already.", 400)
        self.nonces.add(nonce)
        return None

    def sdk_authorization(self, request: httpx.Request, params: dict[str, str],
                          names: list[str], key_id: str) -> str:
        """The Authorization Alibaba Cloud's SDK computes for this request."""
        dara = DaraRequest()
        dara.method = request.method
        dara.pathname = request.url.path
        dara.query = params
        dara.headers = {name: request.headers[name] for name in names}
        return str(SdkUtils.get_authorization(dara, "ACS3-HMAC-SHA256",
                                              request.headers["x-acs-content-sha256"],
                                              key_id, self.keys[key_id]))

    def _send(self, params: dict[str, str]) -> httpx.Response:
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                return answer(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        number = aliyun_number(params["PhoneNumbers"])
        if number is None:
            return answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if params["SignName"] not in self.sign_names:
            return answer("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        template = self.templates.get(params["TemplateCode"])
        if template is None:
            return answer("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            values = json.loads(params.get("TemplateParam", "{}"))
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if any(name not in values for name in VARIABLE.findall(template)):
            return answer("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
        now = self.now().astimezone(BEIJING)
        if self._limited(number, params["TemplateCode"], now):
            return answer("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
        record = {
            "BizId": f"{secrets.randbelow(10**18):018d}^0", "PhoneNum": number,
            "OutId": params.get("OutId"), "TemplateCode": params["TemplateCode"],
            "Content": f"【{params['SignName']}】" + VARIABLE.sub(
                lambda m: values[m.group(1)], template),
            "SendDate": now.strftime(TIME_FORMAT), "SendStatus": 1, "ErrCode": "",
            "ReceiveDate": "",
        }
        self.sends.append(record)
        self._save()
        hooked = hooked_answer(self.after_send, record)
        if hooked is not None:
            return hooked
        return answer("OK", "OK", BizId=record["BizId"])

    def _limited(self, number: str, template: str, now: datetime) -> bool:
        if self.per_minute_limit is None:
            return False
        since = (now - timedelta(minutes=1)).strftime(TIME_FORMAT)
        recent = [s for s in self.sends if s["PhoneNum"] == number
                  and s["TemplateCode"] == template and s["SendDate"] > since]
        return len(recent) >= self.per_minute_limit

    def _query(self, params: dict[str, str]) -> httpx.Response:
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                return answer(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        if not re.fullmatch(r"\d{8}", params["SendDate"]):
            return answer("isv.INVALID_PARAMETERS", "SendDate must be yyyyMMdd")
        size, page = int(params["PageSize"]), int(params["CurrentPage"])
        if not 1 <= size <= 50 or page < 1:
            return answer("isv.INVALID_PARAMETERS", "PageSize must be 1 to 50")
        day = f"{params['SendDate'][:4]}-{params['SendDate'][4:6]}-{params['SendDate'][6:]}"
        rows = [s for s in reversed(self.sends)
                if s["PhoneNum"] == params["PhoneNumber"] and s["SendDate"].startswith(day)
                and params.get("BizId") in (None, s["BizId"])]
        shown = [{k: v for k, v in s.items() if k != "BizId"}
                 for s in rows[(page - 1) * size:page * size]]
        return answer("OK", "OK", TotalCount=len(rows),
                      SmsSendDetailDTOs={"SmsSendDetailDTO": shown})

    # ------------------------------------------------------------- pushes
    def deliver(self, out_id: str, *, success: bool = True) -> bytes:
        """Mark our sends with this OutId delivered (or failed) and write the SmsReport
        push that tells so."""
        reports = []
        with exclusive(self.state_file):
            self._load()
            for send in self.sends:
                if send["OutId"] != out_id:
                    continue
                at = self.now().astimezone(BEIJING).strftime(TIME_FORMAT)
                send |= {"SendStatus": 3 if success else 2, "ReceiveDate": at,
                         "ErrCode": "DELIVERED" if success else "MK:0001"}
                reports.append({
                    "phone_number": send["PhoneNum"], "send_time": send["SendDate"],
                    "report_time": at, "success": success, "err_code": send["ErrCode"],
                    "err_msg": "用户接收成功" if success else "空号", "sms_size": "1",
                    "biz_id": send["BizId"], "out_id": send["OutId"]})
            self._save()
        return json.dumps(reports, ensure_ascii=False).encode()

    def reply(self, phone_number: str, content: str) -> bytes:
        """The SmsUp push of a customer's reply."""
        return json.dumps([{
            "phone_number": phone_number, "content": content, "sign_name": SIGN_NAME,
            "send_time": self.now().astimezone(BEIJING).strftime(TIME_FORMAT),
            "dest_code": "1234", "sequence_id": secrets.randbelow(10**10),
        }], ensure_ascii=False).encode()

    # ------------------------------------------------------------- state
    def _load(self) -> None:
        state = read_state(self.state_file)
        if state is not None:
            self.sends, self.nonces = state["sends"], set(state["nonces"])

    def _save(self) -> None:
        write_state(self.state_file, {"sends": self.sends, "nonces": sorted(self.nonces)})
