"""Issue 14 (review): append_many_once's details check names the same field as before
(main) when the details hold exactly MAX_DETAILS items, one of them bad (merged with the event key
they exceed MAX_DETAILS: the new single check reports the size instead of the bad item)."""

import pytest

from governance.audit import MAX_DETAILS
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import OnceEntry, _once_fields


@pytest.mark.parametrize("bad_key,bad_value", [("aaa", 1.5), ("aaa_secret", 1)])
def test_full_details_with_a_bad_item_name_the_item(bad_key: str, bad_value: object) -> None:
    details = {**{f"k{i:03d}": i for i in range(MAX_DETAILS - 1)}, bad_key: bad_value}
    with pytest.raises(GovernanceError) as e:
        _once_fields(OnceEntry("alice", "act", "ev1", details=details))  # type: ignore[arg-type]
    assert e.value.field == f"details[{bad_key!r}]"  # main: the item; i14c-integ: "details" (more than 64 items)
