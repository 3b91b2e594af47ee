/*-------------------------------------------------------------------------
 *
 * blockrec.c
 *	  The records of the queue from the fetcher to the insert workers:
 *	  decoded blocks, serialized so that the insert worker points its Datums
 *	  straight into its copy of the record (no second decoding), batches of
 *	  refetched blocks (block records in one record), and rollback
 *	  requests, which travel as they are.  The layout is described
 *	  in shared.h (QueueRecordHeader and what follows it).
 *
 *	  The insert workers trust the fetcher, but reading still checks every
 *	  length against the record size, so a corrupt record is an error, not
 *	  a wild read.
 *
 * Copyright (c) 2026, ethindex developers
 *
 * IDENTIFICATION
 *	  src/blockrec.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "blockrec.h"

/* by-value columns are stored as one Datum: int8 must be by value */
#ifndef USE_FLOAT8_BYVAL
#error "ethindex needs a 64-bit build (int8 passed by value)"
#endif

#define HEADER_SIZE MAXALIGN(sizeof(BlockRecordHeader))

static bool byval_cache[ETH_NUM_TABLES][64];
static bool byval_ready = false;

static void
init_byval(void)
{
	if (byval_ready)
		return;
	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		Assert(eth_tables[t].natts <= 64);
		for (int a = 0; a < eth_tables[t].natts; a++)
			byval_cache[t][a] = eth_type_byval(eth_tables[t].columns[a].typid);
	}
	byval_ready = true;
}

Size
blockrec_size(const DecodedBlock *block)
{
	Size		size = HEADER_SIZE;

	init_byval();
	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		const DecodedRows *rows = &block->tables[t];

		Assert(rows->natts == eth_tables[t].natts);
		for (int r = 0; r < rows->nrows; r++)
		{
			size += MAXALIGN(rows->natts);
			for (int a = 0; a < rows->natts; a++)
			{
				int			i = r * rows->natts + a;

				if (rows->nulls[i])
					continue;
				if (byval_cache[t][a])
					size += sizeof(Datum);
				else
					size += MAXALIGN(VARSIZE_ANY(DatumGetPointer(rows->values[i])));
			}
		}
	}
	return size;
}

void
blockrec_write(const DecodedBlock *block, uint8 flags, char *dst, Size size)
{
	BlockRecordHeader *header = (BlockRecordHeader *) dst;
	char	   *p = dst + HEADER_SIZE;

	init_byval();
	memset(dst, 0, HEADER_SIZE);
	header->common.kind = QUEUE_RECORD_BLOCK;
	header->common.flags = flags;
	header->number = block->number;
	memcpy(header->hash, block->hash, 32);
	memcpy(header->parent_hash, block->parent_hash, 32);
	header->transaction_count = block->transaction_count;
	header->log_count = block->log_count;

	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		const DecodedRows *rows = &block->tables[t];

		header->nrows[t] = rows->nrows;
		for (int r = 0; r < rows->nrows; r++)
		{
			const bool *nulls = &rows->nulls[r * rows->natts];
			const Datum *values = &rows->values[r * rows->natts];

			memset(p, 0, MAXALIGN(rows->natts));
			memcpy(p, nulls, rows->natts);
			p += MAXALIGN(rows->natts);
			for (int a = 0; a < rows->natts; a++)
			{
				if (nulls[a])
					continue;
				if (byval_cache[t][a])
				{
					memcpy(p, &values[a], sizeof(Datum));
					p += sizeof(Datum);
				}
				else
				{
					Size		len = VARSIZE_ANY(DatumGetPointer(values[a]));

					memcpy(p, DatumGetPointer(values[a]), len);
					if (MAXALIGN(len) > len)
						memset(p + len, 0, MAXALIGN(len) - len);
					p += MAXALIGN(len);
				}
			}
		}
	}
	if (p != dst + size)
		elog(ERROR, "block record size mismatch: wrote %zu bytes, expected %zu",
			 (Size) (p - dst), size);
}

static void corrupt_record(int64 number) pg_attribute_noreturn();

/* A record that does not have the size its contents say: -1 if no block yet. */
static void
corrupt_record(int64 number)
{
	if (number < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt record in the queue of decoded blocks")));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("corrupt queue record for block " INT64_FORMAT, number)));
}

/* The kind of a queue record. */
QueueRecordKind
blockrec_kind(const char *src, Size size)
{
	const QueueRecordHeader *header = (const QueueRecordHeader *) src;

	if (size < sizeof(QueueRecordHeader) ||
		(header->kind != QUEUE_RECORD_BLOCK && header->kind != QUEUE_RECORD_ROLLBACK &&
		 header->kind != QUEUE_RECORD_REPLACE))
		corrupt_record(-1);
	return (QueueRecordKind) header->kind;
}

/* A rollback request, in place (src must stay alive while it is used). */
const RollbackRequest *
blockrec_read_rollback(const char *src, Size size)
{
	const RollbackRequest *request = (const RollbackRequest *) src;

	if (size != sizeof(RollbackRequest) || request->common.kind != QUEUE_RECORD_ROLLBACK ||
		request->fork_block >= request->old_head)
		corrupt_record(-1);
	return request;
}

/*
 * Rebuild a DecodedBlock whose varlena Datums point into src, which must
 * stay alive (and MAXALIGN'd) while the block is used.
 */
void
blockrec_read(char *src, Size size, DecodedBlock *block, uint8 *flags)
{
	BlockRecordHeader *header = (BlockRecordHeader *) src;
	char	   *p = src + HEADER_SIZE;
	char	   *end = src + size;

	init_byval();
	if (size < HEADER_SIZE || header->common.kind != QUEUE_RECORD_BLOCK)
		corrupt_record(-1);
	*flags = header->common.flags;
	block->number = header->number;
	memcpy(block->hash, header->hash, 32);
	memcpy(block->parent_hash, header->parent_hash, 32);
	block->transaction_count = header->transaction_count;
	block->log_count = header->log_count;

	for (int t = 0; t < ETH_NUM_TABLES; t++)
	{
		DecodedRows *rows = &block->tables[t];
		int			natts = eth_tables[t].natts;
		int			nrows = header->nrows[t];

		if (p > end || nrows < 0 ||
			nrows > (end - p) / (ptrdiff_t) MAXALIGN(natts))
			corrupt_record(block->number);
		rows->natts = natts;
		rows->nrows = nrows;
		rows->values = palloc(sizeof(Datum) * Max(nrows * natts, 1));
		rows->nulls = palloc(sizeof(bool) * Max(nrows * natts, 1));
		for (int r = 0; r < nrows; r++)
		{
			Datum	   *values = &rows->values[r * natts];
			bool	   *nulls = &rows->nulls[r * natts];

			if (end - p < (ptrdiff_t) MAXALIGN(natts))
				corrupt_record(block->number);
			memcpy(nulls, p, natts);
			p += MAXALIGN(natts);
			for (int a = 0; a < natts; a++)
			{
				if (nulls[a])
				{
					values[a] = (Datum) 0;
					continue;
				}
				if (byval_cache[t][a])
				{
					if (end - p < (ptrdiff_t) sizeof(Datum))
						corrupt_record(block->number);
					memcpy(&values[a], p, sizeof(Datum));
					p += sizeof(Datum);
				}
				else
				{
					Size		len;

					if (end - p < (ptrdiff_t) VARHDRSZ)
						corrupt_record(block->number);
					len = VARSIZE_ANY(p);
					if ((ptrdiff_t) len > end - p)
						corrupt_record(block->number);
					values[a] = PointerGetDatum(p);
					p += MAXALIGN(len);
				}
			}
		}
	}
	if (p != end)
		corrupt_record(block->number);
}

#define REPLACE_HEADER_SIZE MAXALIGN(sizeof(ReplaceRecordHeader))
#define REPLACE_LENGTH_SIZE MAXALIGN(sizeof(uint64))

/* The size of a record of refetched blocks. */
Size
blockrec_replace_size(const DecodedBlock *blocks, int nblocks)
{
	Size		size = REPLACE_HEADER_SIZE;

	for (int i = 0; i < nblocks; i++)
		size += REPLACE_LENGTH_SIZE + MAXALIGN(blockrec_size(&blocks[i]));
	return size;
}

/*
 * A record of refetched blocks (see shared.h); with no blocks, the failure
 * of the request, "error" saying why.
 */
void
blockrec_write_replace(const DecodedBlock *blocks, int nblocks, int64 refetch_id,
					   const char *error, char *dst, Size size)
{
	ReplaceRecordHeader *header = (ReplaceRecordHeader *) dst;
	char	   *p = dst + REPLACE_HEADER_SIZE;

	memset(dst, 0, REPLACE_HEADER_SIZE);
	header->common.kind = QUEUE_RECORD_REPLACE;
	header->nblocks = nblocks;
	header->refetch_id = refetch_id;
	if (error)
		strlcpy(header->error, error, sizeof(header->error));
	for (int i = 0; i < nblocks; i++)
	{
		Size		len = blockrec_size(&blocks[i]);

		memset(p, 0, REPLACE_LENGTH_SIZE);
		*(uint64 *) p = len;
		p += REPLACE_LENGTH_SIZE;
		blockrec_write(&blocks[i], 0, p, len);
		if (MAXALIGN(len) > len)
			memset(p + len, 0, MAXALIGN(len) - len);
		p += MAXALIGN(len);
	}
	if (p != dst + size)
		elog(ERROR, "refetch record size mismatch: wrote %zu bytes, expected %zu",
			 (Size) (p - dst), size);
}

/*
 * A record of refetched blocks: its header, and its blocks in *blocks
 * (palloc'd; their Datums point into src).
 */
const ReplaceRecordHeader *
blockrec_read_replace(char *src, Size size, DecodedBlock **blocks)
{
	ReplaceRecordHeader *header = (ReplaceRecordHeader *) src;
	char	   *p = src + REPLACE_HEADER_SIZE;
	char	   *end = src + size;

	if (size < REPLACE_HEADER_SIZE || header->common.kind != QUEUE_RECORD_REPLACE ||
		header->nblocks < 0 || header->nblocks > (int32) (size / REPLACE_LENGTH_SIZE))
		corrupt_record(-1);
	header->error[sizeof(header->error) - 1] = '\0';
	*blocks = palloc(sizeof(DecodedBlock) * Max(header->nblocks, 1));
	for (int i = 0; i < header->nblocks; i++)
	{
		uint64		len;
		uint8		flags;

		if (end - p < (ptrdiff_t) REPLACE_LENGTH_SIZE)
			corrupt_record(-1);
		len = *(uint64 *) p;
		p += REPLACE_LENGTH_SIZE;
		if (len > (uint64) (end - p))
			corrupt_record(-1);
		blockrec_read(p, (Size) len, &(*blocks)[i], &flags);
		p += MAXALIGN(len);
	}
	if (p != end)
		corrupt_record(-1);
	return header;
}
