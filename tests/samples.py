"""Sample data shared by the app tests and the integration tests."""

from __future__ import annotations

from typing import Any

PHONE = "+8613812341234"


def service_record(
    record_no: str = "370200-2026-0001", phone: str | None = PHONE
) -> dict[str, Any]:
    """A finished case as the hall's queue system reports it."""
    return {
        "record_no": record_no,
        "item_code": "11370200MB1234567X",
        "item_name": "不动产登记",
        "department": "市自然资源局",
        "district": "370202",
        "hall": "烟台市政务服务中心",
        "window": "A12",
        "clerk": "张三",
        "completed_at": "2026-11-27T09:30:00+08:00",
        "citizen": {"phone": phone} if phone else None,
    }
