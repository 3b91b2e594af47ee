/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher background worker: keeps a fetcher and its insert workers
 *	  (writers) running for every started chain, and none for the others.
 *
 *	  Registered statically in _PG_init, it connects to ethindex.database
 *	  and, every second or when woken by start()/stop() at commit, compares
 *	  ethindex.chains with the chain slots in shared memory:
 *	    - a started chain without a slot gets one, and its workers are
 *	      launched as dynamic background workers (bgw_notify_pid is the
 *	      launcher, so their start and exit set its latch);
 *	    - a stopped or removed chain's workers are terminated, and its slot
 *	      is freed once all have exited;
 *	    - when one worker of a chain exits on its own (an error), the others
 *	      are terminated too and all are started again after a delay that
 *	      doubles with each failure, up to ETHINDEX_RESTART_MAX_MS.
 *	  Worker handles are kept in the launcher's memory only.  A launcher
 *	  that starts while slots are in use (it was restarted on its own) has
 *	  lost them: it terminates those workers by pid and frees the slots
 *	  before doing anything else.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ethindex.h"
#include "spiutil.h"

/* What the launcher knows of one slot; index = slot number */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *fetcher;
	BackgroundWorkerHandle *writers[ETHINDEX_MAX_INSERT_WORKERS];
	int			nwriters;
	bool		stopping;		/* workers terminated, waiting for exit */
	TimestampTz restart_at;		/* 0: start as soon as possible */
	long		restart_delay_ms;
	int64		checkpoint_at_start;	/* checkpoint_next when last started */
	bool		warned_no_worker_slot;
} LauncherSlot;

/* A chain row as read from ethindex.chains */
typedef struct WantedChain
{
	char		name[NAMEDATALEN];
	bool		enabled;
} WantedChain;

static LauncherSlot *launcher_slots;

/*
 * Names of the started chains that found every slot taken at the last turn
 * (char *, in TopMemoryContext): each is named in a WARNING once, when it
 * first lacks a slot, and again only after it had one or was stopped.
 */
static List *chains_without_slot = NIL;

static bool
name_in_list(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(ethindex_shared->lock, LW_EXCLUSIVE);
	ethindex_shared->launcher_pid = 0;
	ethindex_shared->launcher_latch = NULL;
	LWLockRelease(ethindex_shared->lock);
}

static bool
worker_alive(BackgroundWorkerHandle *handle)
{
	pid_t		pid;

	if (handle == NULL)
		return false;
	return GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED;
}

static void
read_chains_work(void *arg)
{
	List	  **chains = (List **) arg;

	static char warned_version[NAMEDATALEN] = "";
	char	   *version;

	if (spi_run("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'ethindex'",
				0, NULL, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return;

	/*
	 * The workers run the SQL of the versions this library knows; with any
	 * other (a library older than the extension's scripts, or a version
	 * too old to update in place) no chain runs, which the log says once.
	 */
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (!ethindex_sql_version_supported(version))
	{
		if (strcmp(warned_version, version) != 0)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("ethindex: extension version \"%s\" is not supported by the loaded library (version %s); no chain runs",
							version, ETHINDEX_VERSION),
					 errhint("Run ALTER EXTENSION ethindex UPDATE, or install the library that matches the extension.")));
		strlcpy(warned_version, version, sizeof(warned_version));
		return;
	}
	warned_version[0] = '\0';
	spi_run("SELECT name, enabled FROM ethindex.chains ORDER BY name",
			0, NULL, NULL, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		WantedChain *chain = palloc0(sizeof(WantedChain));

		strlcpy(chain->name, SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1), sizeof(chain->name));
		chain->enabled = DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
		*chains = lappend(*chains, chain);
	}
}

/*
 * Read the chains; an empty list when the extension is not installed (yet).
 */
static List *
read_chains(void)
{
	List	   *chains = NIL;

	run_in_transaction("reading chains", read_chains_work, &chains);
	return chains;
}

static BackgroundWorkerHandle *
launch_worker(int slotno, const char *chain, const char *role, const char *function,
			  int writer_index)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ethindex");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	if (writer_index >= 0)
		snprintf(worker.bgw_name, BGW_MAXLEN, "ethindex %s %d %s", role, writer_index, chain);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "ethindex %s %s", role, chain);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ethindex %s", role);
	worker.bgw_main_arg = Int32GetDatum(slotno);
	worker.bgw_notify_pid = MyProcPid;
	{
		ChainWorkerArgs args;

		memset(&args, 0, sizeof(args));
		strlcpy(args.name, chain, sizeof(args.name));
		args.generation = ethindex_shared->slots[slotno].generation;
		args.writer_index = writer_index;
		memcpy(worker.bgw_extra, &args, sizeof(args));
	}

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

static void
terminate_workers(int slotno)
{
	LauncherSlot *ls = &launcher_slots[slotno];

	if (ls->fetcher)
		TerminateBackgroundWorker(ls->fetcher);
	for (int w = 0; w < ls->nwriters; w++)
		if (ls->writers[w])
			TerminateBackgroundWorker(ls->writers[w]);
	ls->stopping = true;
}

static void
forget_workers(int slotno)
{
	LauncherSlot *ls = &launcher_slots[slotno];

	if (ls->fetcher)
		pfree(ls->fetcher);
	ls->fetcher = NULL;
	for (int w = 0; w < ls->nwriters; w++)
	{
		if (ls->writers[w])
			pfree(ls->writers[w]);
		ls->writers[w] = NULL;
	}
	ls->nwriters = 0;
	ls->stopping = false;
}

/*
 * Launch the workers of a slot whose workers are all gone: the insert
 * workers (ethindex.insert_workers, read now) and the fetcher.
 */
static void
start_workers(int slotno)
{
	ChainSlot  *slot = &ethindex_shared->slots[slotno];
	LauncherSlot *ls = &launcher_slots[slotno];
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	bool		ok;

	queue_reset(&slot->queue);
	LWLockAcquire(ethindex_shared->lock, LW_EXCLUSIVE);
	slot->generation++;
	LWLockRelease(ethindex_shared->lock);
	SpinLockAcquire(&slot->mutex);
	slot->state = CHAIN_STATE_STARTING;
	slot->nwriters = ethindex_insert_workers;
	slot->request_blocks = 0;
	slot->window_limit = 0;
	/* what the last generation's fetcher learned is not this one's */
	slot->node_head = -1;
	slot->node_safe = -1;
	slot->node_finalized = -1;
	SpinLockRelease(&slot->mutex);
	/* the start-up handshake begins again (shared.h) */
	LWLockAcquire(&slot->commit_lock, LW_EXCLUSIVE);
	ls->checkpoint_at_start = slot->checkpoint_next;
	slot->ready = false;
	slot->learned_chain_id = 0;
	slot->checkpoint_next = -1;
	slot->npending = 0;
	LWLockRelease(&slot->commit_lock);

	ok = true;
	for (int w = 0; w < ethindex_insert_workers && ok; w++)
	{
		ls->writers[w] = launch_worker(slotno, slot->name, "writer", "ethindex_writer_main", w);
		ls->nwriters = w + 1;
		ok = ls->writers[w] != NULL;
	}
	if (ok)
	{
		ls->fetcher = launch_worker(slotno, slot->name, "fetcher", "ethindex_fetcher_main", -1);
		ok = ls->fetcher != NULL;
	}
	MemoryContextSwitchTo(old);

	if (!ok)
	{
		if (!ls->warned_no_worker_slot)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start the workers of ethindex chain \"%s\": no free background worker slot",
							slot->name),
					 errhint("Increase max_worker_processes; each started chain needs ethindex.insert_workers + 1.")));
		ls->warned_no_worker_slot = true;
		chain_report_error(slot, "no free background worker slot (increase max_worker_processes)");
		terminate_workers(slotno);
		ls->restart_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		return;
	}
	ls->warned_no_worker_slot = false;
	ls->restart_at = 0;
}

static int
find_slot(const char *name)
{
	for (int i = 0; i < ethindex_shared->nslots; i++)
		if (ethindex_shared->slots[i].in_use &&
			strcmp(ethindex_shared->slots[i].name, name) == 0)
			return i;
	return -1;
}

static int
assign_slot(const char *name)
{
	for (int i = 0; i < ethindex_shared->nslots; i++)
	{
		ChainSlot  *slot = &ethindex_shared->slots[i];

		if (slot->in_use)
			continue;
		LWLockAcquire(ethindex_shared->lock, LW_EXCLUSIVE);
		slot->in_use = true;
		strlcpy(slot->name, name, sizeof(slot->name));
		LWLockRelease(ethindex_shared->lock);

		SpinLockAcquire(&slot->mutex);
		slot->state = CHAIN_STATE_STARTING;
		slot->last_error[0] = '\0';
		slot->last_error_at = 0;
		slot->endpoint[0] = '\0';
		memset(slot->rate_second, 0, sizeof(slot->rate_second));
		SpinLockRelease(&slot->mutex);

		memset(&launcher_slots[i], 0, sizeof(LauncherSlot));
		return i;
	}
	return -1;
}

static void
free_slot(int slotno)
{
	ChainSlot  *slot = &ethindex_shared->slots[slotno];

	forget_workers(slotno);
	LWLockAcquire(ethindex_shared->lock, LW_EXCLUSIVE);
	slot->in_use = false;
	slot->name[0] = '\0';
	LWLockRelease(ethindex_shared->lock);
	SpinLockAcquire(&slot->mutex);
	slot->state = CHAIN_STATE_IDLE;
	SpinLockRelease(&slot->mutex);
}

/* Bring the workers in line with ethindex.chains. */
static void
reconcile(void)
{
	List	   *chains = read_chains();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	List	   *lacking = NIL;
	MemoryContext old;

	/* slots of chains that are no longer wanted */
	for (int i = 0; i < ethindex_shared->nslots; i++)
	{
		ChainSlot  *slot = &ethindex_shared->slots[i];
		LauncherSlot *ls = &launcher_slots[i];
		bool		wanted = false;
		bool		all_alive;
		bool		any_alive;
		bool		any_handle;

		if (!slot->in_use)
			continue;
		foreach(lc, chains)
		{
			WantedChain *chain = (WantedChain *) lfirst(lc);

			if (strcmp(chain->name, slot->name) == 0 && chain->enabled)
				wanted = true;
		}

		all_alive = any_alive = worker_alive(ls->fetcher);
		any_handle = ls->fetcher != NULL;
		for (int w = 0; w < ls->nwriters; w++)
		{
			bool		alive = worker_alive(ls->writers[w]);

			all_alive &= alive;
			any_alive |= alive;
			any_handle |= ls->writers[w] != NULL;
		}
		all_alive &= ls->nwriters > 0;

		if (!wanted)
		{
			if (any_alive)
			{
				if (!ls->stopping)
					ereport(LOG, (errmsg("ethindex: stopping chain \"%s\"", slot->name)));
				terminate_workers(i);
			}
			else
				free_slot(i);
			continue;
		}

		if (all_alive && !ls->stopping)
		{
			/* healthy again once the checkpoint moved since the start */
			int64		next;

			LWLockAcquire(&slot->commit_lock, LW_SHARED);
			next = slot->checkpoint_next;
			LWLockRelease(&slot->commit_lock);
			if (next > ls->checkpoint_at_start)
				ls->restart_delay_ms = 0;
			continue;
		}

		if (any_alive)
		{
			/* one of them failed: stop the others, restart all later */
			if (!ls->stopping)
			{
				ls->restart_delay_ms = ls->restart_delay_ms == 0 ? ETHINDEX_RESTART_MIN_MS :
					Min(ls->restart_delay_ms * 2, ETHINDEX_RESTART_MAX_MS);
				ls->restart_at = TimestampTzPlusMilliseconds(now, ls->restart_delay_ms);
				ereport(LOG,
						(errmsg("ethindex: a worker of chain \"%s\" exited, restarting the chain in %ld ms",
								slot->name, ls->restart_delay_ms)));
				SpinLockAcquire(&slot->mutex);
				slot->state = CHAIN_STATE_ERROR;
				SpinLockRelease(&slot->mutex);
			}
			terminate_workers(i);
			continue;
		}

		/* all gone (or never started) */
		if (any_handle)
		{
			if (!ls->stopping && ls->restart_at == 0)
			{
				ls->restart_delay_ms = ls->restart_delay_ms == 0 ? ETHINDEX_RESTART_MIN_MS :
					Min(ls->restart_delay_ms * 2, ETHINDEX_RESTART_MAX_MS);
				ls->restart_at = TimestampTzPlusMilliseconds(now, ls->restart_delay_ms);
			}
			forget_workers(i);
		}
		if (ls->restart_at != 0 && now < ls->restart_at)
			continue;
		start_workers(i);
	}

	/* chains that want a slot */
	foreach(lc, chains)
	{
		WantedChain *chain = (WantedChain *) lfirst(lc);
		int			slotno;

		if (!chain->enabled || find_slot(chain->name) >= 0)
			continue;
		slotno = assign_slot(chain->name);
		if (slotno < 0)
		{
			if (!name_in_list(chains_without_slot, chain->name))
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("ethindex cannot start chain \"%s\": all %d chain slots are in use",
								chain->name, ethindex_shared->nslots),
						 errdetail("The chain waits until a slot is free."),
						 errhint("Increase ethindex.max_chains.")));
			lacking = lappend(lacking, chain->name);
			continue;
		}
		ereport(LOG, (errmsg("ethindex: starting chain \"%s\"", chain->name)));
		start_workers(slotno);
	}
	/* remember who was warned about: the chains still without a slot */
	old = MemoryContextSwitchTo(TopMemoryContext);
	list_free_deep(chains_without_slot);
	chains_without_slot = NIL;
	foreach(lc, lacking)
		chains_without_slot = lappend(chains_without_slot, pstrdup((char *) lfirst(lc)));
	MemoryContextSwitchTo(old);
	list_free(lacking);
	list_free_deep(chains);
}

/*
 * A previous launcher may have left workers running whose handles are lost:
 * terminate them by pid and free their slots.
 */
static void
repair_slots(void)
{
	for (int i = 0; i < ethindex_shared->nslots; i++)
	{
		ChainSlot  *slot = &ethindex_shared->slots[i];

		if (!slot->in_use)
			continue;
		for (;;)
		{
			pid_t		pids[ETHINDEX_MAX_INSERT_WORKERS + 1];
			bool		any = false;

			SpinLockAcquire(&slot->mutex);
			pids[0] = slot->fetcher_pid;
			memcpy(&pids[1], slot->writer_pids, sizeof(slot->writer_pids));
			SpinLockRelease(&slot->mutex);
			for (int p = 0; p < lengthof(pids); p++)
				if (pids[p] != 0)
				{
					kill(pids[p], SIGTERM);
					any = true;
				}
			if (!any)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		free_slot(i);
	}
}

void
ethindex_launcher_main(Datum main_arg)
{
	MemoryContext loop_context;
	sigjmp_buf	local_sigjmp_buf;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (ethindex_shared == NULL)
		elog(FATAL, "ethindex launcher started without its shared state");

	ethindex_worker_connect("ethindex launcher");

	launcher_slots = MemoryContextAllocZero(TopMemoryContext,
											sizeof(LauncherSlot) * ethindex_shared->nslots);

	LWLockAcquire(ethindex_shared->lock, LW_EXCLUSIVE);
	ethindex_shared->launcher_pid = MyProcPid;
	ethindex_shared->launcher_latch = MyLatch;
	LWLockRelease(ethindex_shared->lock);
	on_shmem_exit(launcher_detach, (Datum) 0);

	ereport(LOG, (errmsg("ethindex launcher started in database \"%s\"", ethindex_database)));

	repair_slots();

	loop_context = AllocSetContextCreate(TopMemoryContext, "ethindex launcher loop",
										 ALLOCSET_DEFAULT_SIZES);

	/*
	 * An error in a turn (reading ethindex.chains failed, say) is reported
	 * and the turn tried again a nap later: exiting would make the next
	 * launcher terminate every chain's workers (repair_slots()), so one
	 * problem would stop them all.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		LWLockReleaseAll();
		pgstat_report_wait_end();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(loop_context);
		RESUME_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ETHINDEX_LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextSwitchTo(loop_context);
		reconcile();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_context);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ETHINDEX_LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
