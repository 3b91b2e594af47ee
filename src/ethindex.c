/*-------------------------------------------------------------------------
 *
 * ethindex.c
 *	  Module entry point: GUCs, shared memory and the launcher's
 *	  registration.
 *
 *	  Everything that needs shared_preload_libraries happens here, and only
 *	  when the library is being preloaded: loaded later (for example by
 *	  CREATE EXTENSION), the module defines its GUCs and SQL functions but
 *	  no shared state; ethindex_check_loaded() then tells the user why
 *	  indexing cannot start.
 *
 *	  Shared memory is one EthindexShared struct with ethindex.max_chains
 *	  ChainSlots, followed by one queue ring of ethindex.queue_size per slot
 *	  (layouts and locking protocol: shared.h).
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/ethindex.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "ethindex.h"
#include "hostpolicy.h"

PG_MODULE_MAGIC;

/* CURLOPT_PROTOCOLS_STR and CURLOPT_REDIR_PROTOCOLS_STR came with 7.85 */
#if LIBCURL_VERSION_NUM < 0x075500
#error "ethindex needs libcurl 7.85 or later"
#endif

/* GUC variables */
char	   *ethindex_database = NULL;
int			ethindex_max_chains = 4;
int			ethindex_queue_size_kb = 32 * 1024;
int			ethindex_rpc_timeout_ms = 30000;
int			ethindex_max_response_kb = 64 * 1024;
int			ethindex_max_bytes_in_flight_kb = 256 * 1024;
char	   *ethindex_allowed_hosts = NULL;
char	   *ethindex_denied_hosts = NULL;
int			ethindex_max_requests_in_flight = 4;
int			ethindex_writer_batch_blocks = 100;
int			ethindex_retry_max_ms = 30000;
int			ethindex_insert_workers = 2;
bool		ethindex_defer_indexes = true;
int			ethindex_max_pending_ranges = ETHINDEX_MAX_PENDING_RANGES;

EthindexShared *ethindex_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_registered = false;
static bool wake_at_commit = false;
static List *fetchers_to_wake = NIL;	/* chain names, in TopMemoryContext */

void		_PG_init(void);

static Size
queue_ring_size(void)
{
	return MAXALIGN((Size) ethindex_queue_size_kb * 1024);
}

static Size
shared_struct_size(void)
{
	return MAXALIGN(add_size(offsetof(EthindexShared, slots),
							 mul_size(sizeof(ChainSlot), ethindex_max_chains)));
}

static Size
ethindex_shmem_size(void)
{
	return add_size(shared_struct_size(),
					mul_size(queue_ring_size(), ethindex_max_chains));
}

char *
ethindex_queue_buffer(int slotno)
{
	Assert(ethindex_shared != NULL && slotno >= 0 && slotno < ethindex_shared->nslots);
	return (char *) ethindex_shared + shared_struct_size() +
		(Size) slotno * queue_ring_size();
}

static void
ethindex_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(ethindex_shmem_size());
	RequestNamedLWLockTranche("ethindex", 1);
}

static void
ethindex_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ethindex_shared = ShmemInitStruct("ethindex", ethindex_shmem_size(), &found);
	if (!found)
	{
		int			queue_tranche = LWLockNewTrancheId();
		int			commit_tranche = LWLockNewTrancheId();

		memset(ethindex_shared, 0, shared_struct_size());
		ethindex_shared->lock = &(GetNamedLWLockTranche("ethindex"))->lock;
		ethindex_shared->nslots = ethindex_max_chains;
		for (int i = 0; i < ethindex_max_chains; i++)
		{
			ChainSlot  *slot = &ethindex_shared->slots[i];

			SpinLockInit(&slot->mutex);
			slot->node_head = -1;
			slot->node_safe = -1;
			slot->node_finalized = -1;
			LWLockInitialize(&slot->commit_lock, commit_tranche);
			ConditionVariableInit(&slot->commit_cv);
			slot->checkpoint_next = -1;
			queue_init(&slot->queue, queue_ring_size(), queue_tranche);
		}
		LWLockRegisterTranche(queue_tranche, "ethindex_queue");
		LWLockRegisterTranche(commit_tranche, "ethindex_commit");
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 2;	/* e.g. until ethindex.database exists */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ethindex");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ethindex_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ethindex launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ethindex launcher");
	RegisterBackgroundWorker(&worker);
}

static void
define_gucs(void)
{
	DefineCustomStringVariable("ethindex.database",
							   gettext_noop("Database in which the ethindex launcher runs."),
							   gettext_noop("The extension must be created in this database."),
							   &ethindex_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.max_chains",
							gettext_noop("Maximum number of chains indexed at the same time."),
							NULL,
							&ethindex_max_chains,
							4, 1, 64,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.queue_size",
							gettext_noop("Shared memory for decoded blocks waiting to be written, per chain."),
							gettext_noop("A full queue makes the fetcher wait."),
							&ethindex_queue_size_kb,
							32 * 1024, 1024, 4 * 1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.rpc_timeout",
							gettext_noop("Time limit of one JSON-RPC request."),
							NULL,
							&ethindex_rpc_timeout_ms,
							30000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.max_response_size",
							gettext_noop("Largest JSON-RPC response accepted, after decompression."),
							gettext_noop("A larger one fails the request; a request is at most this much memory."),
							&ethindex_max_response_kb,
							64 * 1024, 1024, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.max_bytes_in_flight",
							gettext_noop("Memory of the JSON-RPC responses a chain's fetcher holds at once."),
							gettext_noop("Responses being received or waiting to be decoded; no new request starts at the limit, and a response that would pass it fails its request (one response alone is limited by ethindex.max_response_size only)."),
							&ethindex_max_bytes_in_flight_kb,
							256 * 1024, 1024, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("ethindex.allowed_hosts",
							   gettext_noop("Hosts that JSON-RPC endpoints may be on: names, \"*.\" domains, addresses, networks, or \"*\"."),
							   NULL,
							   &ethindex_allowed_hosts,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT | GUC_SUPERUSER_ONLY,
							   host_policy_check, NULL, NULL);

	DefineCustomStringVariable("ethindex.denied_hosts",
							   gettext_noop("Hosts and addresses that JSON-RPC endpoints may not reach."),
							   gettext_noop("Also checked against every address a host name resolves to."),
							   &ethindex_denied_hosts,
							   "169.254.0.0/16, fe80::/10",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT | GUC_SUPERUSER_ONLY,
							   host_policy_check, NULL, NULL);

	DefineCustomIntVariable("ethindex.max_requests_in_flight",
							gettext_noop("Most JSON-RPC requests a fetcher keeps in flight at once."),
							gettext_noop("Within this bound the fetcher adapts the number to the node."),
							&ethindex_max_requests_in_flight,
							4, 1, 64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.writer_batch_blocks",
							gettext_noop("Most blocks a writer stores in one transaction."),
							NULL,
							&ethindex_writer_batch_blocks,
							100, 1, ETHINDEX_MAX_WRITER_BATCH,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.insert_workers",
							gettext_noop("Insert workers (writers) started per chain."),
							gettext_noop("Takes effect when a chain's workers are next started."),
							&ethindex_insert_workers,
							2, 1, ETHINDEX_MAX_INSERT_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ethindex.defer_indexes",
							 gettext_noop("Load backfill partitions without indexes and index each one when it is complete."),
							 NULL,
							 &ethindex_defer_indexes,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.max_pending_ranges",
							gettext_noop("Batches an insert worker may commit ahead of the checkpoint, per chain (developer option for tests)."),
							NULL,
							&ethindex_max_pending_ranges,
							ETHINDEX_MAX_PENDING_RANGES, 1, ETHINDEX_MAX_PENDING_RANGES,
							PGC_SIGHUP,
							GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ethindex.retry_max_delay",
							gettext_noop("Longest wait between retries after a failed request or block."),
							NULL,
							&ethindex_retry_max_ms,
							30000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ethindex");
}

void
_PG_init(void)
{
	/*
	 * Loaded later than at server start (for example by CREATE EXTENSION),
	 * the module only serves its SQL functions: PGC_POSTMASTER settings
	 * cannot be defined any more, and there is no shared memory to use.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	define_gucs();

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ethindex_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ethindex_shmem_startup;

	register_launcher();
}

/*
 * Connect a worker to ethindex.database, name it in pg_stat_activity, and
 * pin the settings its SQL relies on, whatever the database or role set:
 *  - search_path: pg_catalog, pg_temp.  The workers run as the bootstrap
 *    superuser; with a search_path a database owner chose, an operator or
 *    function created in a schema on it would run with those rights;
 *  - no statement, lock or idle-in-transaction timeouts: an index build or
 *    a wait for the checkpoint row cut short would restart the chain, and
 *    the build with it.
 */
void
ethindex_worker_connect(const char *appname)
{
	BackgroundWorkerInitializeConnection(ethindex_database, NULL, 0);
	pgstat_report_appname(appname);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Can the workers of this library run with that version of the SQL? */
bool
ethindex_sql_version_supported(const char *version)
{
	static const char *const versions[] = ETHINDEX_SQL_VERSIONS;

	for (int i = 0; i < lengthof(versions); i++)
		if (strcmp(version, versions[i]) == 0)
			return true;
	return false;
}

/*
 * Raise an error unless the library was preloaded and this is the database
 * the launcher serves.
 */
void
ethindex_check_loaded(void)
{
	if (ethindex_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ethindex must be loaded via shared_preload_libraries"),
				 errhint("Add ethindex to shared_preload_libraries in postgresql.conf and restart the server.")));

	if (ethindex_database == NULL ||
		strcmp(ethindex_database, get_database_name(MyDatabaseId)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ethindex indexes chains of database \"%s\", not of this database",
						ethindex_database ? ethindex_database : ""),
				 errhint("Set ethindex.database to \"%s\" and restart the server, or use database \"%s\".",
						 get_database_name(MyDatabaseId),
						 ethindex_database ? ethindex_database : "")));
}

void
ethindex_wake_launcher(void)
{
	Latch	   *latch;

	if (ethindex_shared == NULL)
		return;
	LWLockAcquire(ethindex_shared->lock, LW_SHARED);
	latch = ethindex_shared->launcher_latch;
	if (latch != NULL)
		SetLatch(latch);
	LWLockRelease(ethindex_shared->lock);
}

/* Tell the fetcher of a chain (if it runs) that refetches were requested. */
static void
wake_fetcher(const char *chain)
{
	if (ethindex_shared == NULL)
		return;
	LWLockAcquire(ethindex_shared->lock, LW_SHARED);
	for (int i = 0; i < ethindex_shared->nslots; i++)
	{
		ChainSlot  *slot = &ethindex_shared->slots[i];
		Latch	   *latch;

		if (!slot->in_use || strcmp(slot->name, chain) != 0)
			continue;
		SpinLockAcquire(&slot->mutex);
		slot->refetch_generation++;
		latch = slot->fetcher_latch;
		SpinLockRelease(&slot->mutex);
		if (latch != NULL)
			SetLatch(latch);
	}
	LWLockRelease(ethindex_shared->lock);
}

static void
wake_at_commit_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				ethindex_wake_launcher();
			foreach(lc, fetchers_to_wake)
				wake_fetcher((const char *) lfirst(lc));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			break;
		default:
			return;
	}
	wake_at_commit = false;
	list_free_deep(fetchers_to_wake);
	fetchers_to_wake = NIL;
}

static void
register_wake_callback(void)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_at_commit_xact_callback, NULL);
		wake_registered = true;
	}
}

/* Arrange for the launcher to be woken when the current transaction commits. */
void
ethindex_request_launcher_wakeup(void)
{
	register_wake_callback();
	wake_at_commit = true;
}

/*
 * Arrange for a chain's fetcher to be told, when the current transaction
 * commits, that refetch requests were added.
 */
void
ethindex_request_fetcher_wakeup(const char *chain)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	register_wake_callback();
	fetchers_to_wake = lappend(fetchers_to_wake, pstrdup(chain));
	MemoryContextSwitchTo(old);
}
