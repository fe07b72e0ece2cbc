"""The store's API: users and API keys, connections, and the run queue.

Ownership is enforced in one place: ``get_connection`` (and ``get_run`` through the run's
connection) only ever returns objects owned by the given user and raises ``NotFound``
otherwise, with the same message whether the id does not exist or belongs to somebody
else, so ids cannot be probed. Web and API code call these functions and never query
``Connection`` or ``SyncRun`` by id themselves.

Every function takes the caller's ``Session`` and does not commit: the caller's
``session_scope`` decides the transaction. Flushes happen where an id or a constraint
check is needed.

Every function that writes calls ``db.take_write_lock`` before its first statement, so on
SQLite its transaction holds the write lock from the start (see ``sheets_sync.db``). A
caller that reads in the same transaction before calling one takes the lock itself
first; reading functions take nothing, so read-only requests never wait for a writer.
"""

# The store's API, so callers say store.create_connection(…) whatever module holds it.
from sheets_sync.store.connections import (
    PAUSE_AFTER_FAILURES as PAUSE_AFTER_FAILURES,
)
from sheets_sync.store.connections import (
    create_connection as create_connection,
)
from sheets_sync.store.connections import (
    decrypted_api_key as decrypted_api_key,
)
from sheets_sync.store.connections import (
    delete_connection as delete_connection,
)
from sheets_sync.store.connections import (
    get_connection as get_connection,
)
from sheets_sync.store.connections import (
    list_connections as list_connections,
)
from sheets_sync.store.connections import (
    merge_connection_options as merge_connection_options,
)
from sheets_sync.store.connections import (
    pause_reason_for as pause_reason_for,
)
from sheets_sync.store.connections import (
    resume_connection as resume_connection,
)
from sheets_sync.store.connections import (
    schedule_next as schedule_next,
)
from sheets_sync.store.connections import (
    update_connection as update_connection,
)
from sheets_sync.store.ids import (
    NotFound as NotFound,
)
from sheets_sync.store.models import (
    Connection as Connection,
)
from sheets_sync.store.pinning import (
    least_loaded_account as least_loaded_account,
)
from sheets_sync.store.pinning import (
    move_connection as move_connection,
)
from sheets_sync.store.pinning import (
    pin_if_unpinned as pin_if_unpinned,
)
from sheets_sync.store.runs import (
    ClaimedRun as ClaimedRun,
)
from sheets_sync.store.runs import (
    _find_active_run as _find_active_run,
)
from sheets_sync.store.runs import (
    claim_next_run as claim_next_run,
)
from sheets_sync.store.runs import (
    claim_next_run_id as claim_next_run_id,
)
from sheets_sync.store.runs import (
    claim_run as claim_run,
)
from sheets_sync.store.runs import (
    enqueue_run as enqueue_run,
)
from sheets_sync.store.runs import (
    enqueue_runs as enqueue_runs,
)
from sheets_sync.store.runs import (
    expire_leases as expire_leases,
)
from sheets_sync.store.runs import (
    finish_run as finish_run,
)
from sheets_sync.store.runs import (
    get_run as get_run,
)
from sheets_sync.store.runs import (
    last_run as last_run,
)
from sheets_sync.store.runs import (
    last_runs as last_runs,
)
from sheets_sync.store.runs import (
    list_runs as list_runs,
)
from sheets_sync.store.runs import (
    prune_runs as prune_runs,
)
from sheets_sync.store.runs import (
    renew_lease as renew_lease,
)
from sheets_sync.store.users import (
    api_key_use_due as api_key_use_due,
)
from sheets_sync.store.users import (
    authenticate as authenticate,
)
from sheets_sync.store.users import (
    create_api_key as create_api_key,
)
from sheets_sync.store.users import (
    create_reset_token as create_reset_token,
)
from sheets_sync.store.users import (
    create_user as create_user,
)
from sheets_sync.store.users import (
    end_sessions as end_sessions,
)
from sheets_sync.store.users import (
    find_api_key as find_api_key,
)
from sheets_sync.store.users import (
    get_user as get_user,
)
from sheets_sync.store.users import (
    get_user_by_email as get_user_by_email,
)
from sheets_sync.store.users import (
    has_control_characters as has_control_characters,
)
from sheets_sync.store.users import (
    list_api_keys as list_api_keys,
)
from sheets_sync.store.users import (
    record_api_key_use as record_api_key_use,
)
from sheets_sync.store.users import (
    reset_password as reset_password,
)
from sheets_sync.store.users import (
    reset_token_user as reset_token_user,
)
from sheets_sync.store.users import (
    revoke_api_key as revoke_api_key,
)
from sheets_sync.store.users import (
    set_password as set_password,
)
from sheets_sync.store.users import (
    user_for_api_key as user_for_api_key,
)
