/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot format benchmark: builds a realistic synthetic guest memory image
 * (mostly zero pages, runs of code-like, text-like, sparse-struct and random
 * pages), then for each frame size measures compressed size and ratio,
 * compression and decompression throughput per core, and random single-page
 * read latency from a warm file.
 *
 * Usage: format_bench [--size MIB] [--frames LIST] [--threads N] [--reads N]
 *                     [--dir DIR] [--raw FILE]
 *   --size MIB      synthetic image size (default 256)
 *   --frames LIST   comma-separated frame sizes in KiB (default 16,64,256,2048)
 *   --threads N     also measure compression with N threads (default 2)
 *   --reads N       random page reads per frame size (default 20000)
 *   --dir DIR       where to write the snapshots (default /tmp)
 *   --raw FILE      use FILE (a raw memory image) instead of the synthetic one
 *   --corpus FILE   take code/text pages from FILE (real binaries and text)
 *                   instead of generating them
 *   --save-image F  also write the synthetic image to F (for other tools)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sm/format.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: per-core throughput that does not depend on
 * how busy the machine is (these machines are shared). */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

/* Code-like: x86-ish instruction bytes from a small vocabulary, with
 * addresses and immediates varying. */
static void fill_code(unsigned char *p)
{
	static const unsigned char ops[][4] = {
		{0x48, 0x89, 0xe5, 0}, {0x55, 0, 0, 0},	      {0xc3, 0, 0, 0},
		{0x48, 0x8b, 0x45, 0}, {0xe8, 0, 0, 0},	      {0x0f, 0x1f, 0x44, 0},
		{0x31, 0xc0, 0, 0},    {0x48, 0x83, 0xec, 0}, {0x74, 0, 0, 0},
		{0x89, 0x7d, 0, 0},    {0xff, 0x15, 0, 0},    {0x90, 0, 0, 0}};
	static const int len[] = {3, 1, 1, 3, 1, 3, 2, 3, 1, 2, 2, 1};
	for (size_t i = 0; i < 4096;) {
		uint64_t r = next();
		int k = (int)(r % 12);
		for (int j = 0; j < len[k] && i < 4096; j++)
			p[i++] = ops[k][j];
		int imm = (r >> 8) % 4 == 0 ? 4 : ((r >> 8) % 4 == 1 ? 1 : 0);
		for (int j = 0; j < imm && i < 4096; j++)
			p[i++] = (unsigned char)(r >> (16 + 8 * j));
	}
}

static void fill_text(unsigned char *p)
{
	static const char *w[] = {"the ",     "kernel ", "/usr/lib/", "libc.so.6 ", "PATH=",
				  "busybox ", "init ",	 "error: ",   "%s:%d ",	    "\n",
				  "0x7ffd",   "HOME=/ ", "struct ",   "file ",	    "ld-linux "};
	for (size_t i = 0; i < 4096;) {
		const char *s = w[next() % 15];
		while (*s && i < 4096)
			p[i++] = (unsigned char)*s++;
	}
}

static void fill_sparse(unsigned char *p)
{
	memset(p, 0, 4096);
	int n = 8 + (int)(next() % 64);
	for (int i = 0; i < n; i++) {
		uint64_t v = next() & 0xffffffffffull; /* pointers, counters, flags */
		memcpy(p + (next() % 512) * 8, &v, 8);
	}
}

static void fill_random(unsigned char *p)
{
	for (size_t i = 0; i < 4096; i += 8) {
		uint64_t v = next();
		memcpy(p + i, &v, 8);
	}
}

/* Real file contents to draw non-zero pages from (--corpus): the host's
 * binaries, libraries and text, as a guest's page cache and mappings hold. */
static const unsigned char *corpus;
static size_t corpus_len, corpus_pos;

static void fill_corpus(unsigned char *p)
{
	for (int tries = 0; tries < 64; tries++) {
		if (corpus_pos + 4096 > corpus_len)
			corpus_pos = 0;
		memcpy(p, corpus + corpus_pos, 4096);
		corpus_pos += 4096;
		for (size_t i = 0; i < 4096; i++)
			if (p[i])
				return;
	}
	fill_text(p);
}

/* Runs of 1..64 pages of one kind: 70% zero, 10% code, 8% text, 10% sparse
 * structs, 2% random (compressed or encrypted data). With a corpus, code
 * and text pages come from it, consecutive pages from consecutive bytes. */
static void synth(unsigned char *mem, size_t size)
{
	size_t pages = size / 4096;
	for (size_t p = 0; p < pages;) {
		size_t run = 1 + next() % 64;
		unsigned k = (unsigned)(next() % 100);
		for (size_t i = 0; i < run && p < pages; i++, p++) {
			unsigned char *pg = mem + p * 4096;
			if (k < 70)
				memset(pg, 0, 4096);
			else if (k < 88 && corpus)
				fill_corpus(pg);
			else if (k < 80)
				fill_code(pg);
			else if (k < 88)
				fill_text(pg);
			else if (k < 98)
				fill_sparse(pg);
			else
				fill_random(pg);
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double write_snap(const char *path, const unsigned char *mem, size_t size, uint32_t frame,
			 unsigned threads, double *cpu)
{
	double c0 = cpu_now();
	struct sm_error err = {0};
	struct fmt_writer *w;
	struct fmt_writer_opts o = {.threads = threads, .frame_size = frame};
	double t0 = now();
	if (fmt_writer_create(&w, path, &o, &err) < 0 || fmt_writer_add_meta(w, "{}", &err) < 0 ||
	    fmt_writer_mem_begin(w, size, &err) < 0) {
		fprintf(stderr, "format_bench: %s\n", err.msg);
		exit(1);
	}
	for (size_t off = 0; off < size; off += 4u << 20) {
		size_t n = size - off < (4u << 20) ? size - off : 4u << 20;
		if (fmt_writer_mem_write(w, mem + off, n, &err) < 0) {
			fprintf(stderr, "format_bench: %s\n", err.msg);
			exit(1);
		}
	}
	if (fmt_writer_mem_end(w, &err) < 0 || fmt_writer_commit(w, &err) < 0) {
		fprintf(stderr, "format_bench: %s\n", err.msg);
		exit(1);
	}
	fmt_writer_free(w);
	*cpu = cpu_now() - c0;
	return now() - t0;
}

int main(int argc, char **argv)
{
	size_t size = 256u << 20;
	unsigned threads = 2, reads = 20000;
	const char *dir = "/tmp", *raw = NULL, *save_image = NULL, *corpus_path = NULL;
	char frames_arg[256] = "16,64,256,2048";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			puts("Usage: format_bench [--size MIB] [--frames KIB,...] [--threads N] "
			     "[--reads N] [--dir DIR] [--raw FILE] [--corpus FILE] [--save-image "
			     "FILE]");
			return 0;
		}
		if (!v) {
			fprintf(stderr, "format_bench: %s needs a value\n", a);
			return 125;
		}
		if (!strcmp(a, "--size"))
			size = (size_t)strtoull(v, NULL, 0) << 20;
		else if (!strcmp(a, "--frames"))
			snprintf(frames_arg, sizeof(frames_arg), "%s", v);
		else if (!strcmp(a, "--threads"))
			threads = (unsigned)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--reads"))
			reads = (unsigned)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--raw"))
			raw = v;
		else if (!strcmp(a, "--corpus"))
			corpus_path = v;
		else if (!strcmp(a, "--save-image"))
			save_image = v;
		else {
			fprintf(stderr, "format_bench: unknown option %s\n", a);
			return 125;
		}
		i++;
	}
	unsigned char *mem;
	if (raw) {
		int fd = open(raw, O_RDONLY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || st.st_size % 4096) {
			fprintf(stderr, "format_bench: cannot use %s\n", raw);
			return 125;
		}
		size = (size_t)st.st_size;
		mem = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (mem == MAP_FAILED)
			return 125;
	} else {
		mem = malloc(size);
		if (!mem)
			return 125;
		if (corpus_path) {
			int fd = open(corpus_path, O_RDONLY);
			struct stat st;
			if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 4096) {
				fprintf(stderr, "format_bench: cannot use corpus %s\n",
					corpus_path);
				return 125;
			}
			corpus_len = (size_t)st.st_size;
			corpus = mmap(NULL, corpus_len, PROT_READ, MAP_PRIVATE, fd, 0);
			close(fd);
			if (corpus == MAP_FAILED)
				return 125;
		}
		synth(mem, size);
		if (save_image) {
			int fd = open(save_image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write(fd, mem, size) != (ssize_t)size)
				return 125;
			close(fd);
		}
	}
	size_t pages = size / 4096, nonzero = 0;
	static const unsigned char zero[4096];
	for (size_t p = 0; p < pages; p++)
		nonzero += memcmp(mem + p * 4096, zero, 4096) != 0;
	double nz_mb = (double)nonzero * 4096 / 1e6;
	printf("image: %s%s, %zu MiB, %zu pages, %zu non-zero (%.1f%%, %.1f MB)\n",
	       raw ? raw : "synthetic", corpus_path && !raw ? " (code/text pages from corpus)" : "",
	       size >> 20, pages, nonzero, 100.0 * (double)nonzero / (double)pages, nz_mb);
	printf("zstd level 3. Throughput: MB (1e6 bytes) of non-zero guest pages per second;\n"
	       "'/core' columns divide by the thread's CPU time (one core), 'wall Nt' is wall\n"
	       "time with N=%u threads. Page reads: a random stored page from a warm file,\n"
	       "wall and CPU time per read.\n\n",
	       threads);
	printf("%6s %10s %6s %6s %9s %8s %9s %9s %8s %8s %8s %8s\n", "frame", "snapshot", "ratio",
	       "ratio", "comp", "comp", "decomp", "unpack", "page", "page", "page", "page");
	printf("%6s %10s %6s %6s %9s %8s %9s %9s %8s %8s %8s %8s\n", "KiB", "bytes", "memory",
	       "stored", "MB/s/core", "wall Nt", "MB/s/core", "MB/s/core", "p50 us", "p99 us",
	       "cpu p50", "cpu p99");

	char path[4096], out[4096];
	snprintf(path, sizeof(path), "%s/format_bench.snap", dir);
	snprintf(out, sizeof(out), "%s/format_bench.raw", dir);
	double *lat = malloc(sizeof(double) * (reads ? reads : 1));
	double *clat = malloc(sizeof(double) * (reads ? reads : 1));
	uint64_t *present = malloc(sizeof(uint64_t) * (nonzero ? nonzero : 1));
	size_t np = 0;
	for (size_t p = 0; p < pages; p++)
		if (memcmp(mem + p * 4096, zero, 4096) != 0)
			present[np++] = p;
	for (char *save = NULL, *tok = strtok_r(frames_arg, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		uint32_t frame = (uint32_t)strtoul(tok, NULL, 0) * 1024;
		double cc1, ccn;
		(void)ccn;
		(void)write_snap(path, mem, size, frame, 1, &cc1);
		double tcn = write_snap(path, mem, size, frame, threads, &ccn);
		struct stat st;
		stat(path, &st);

		struct sm_error err = {0};
		struct fmt_reader *r;
		if (fmt_reader_open(&r, path, &err) < 0) {
			fprintf(stderr, "format_bench: %s\n", err.msg);
			return 1;
		}
		struct fmt_mem_info mi;
		fmt_reader_mem_info(r, &mi, &err);
		/* decompression: every stored page in address order (each frame
		 * decompressed once, every page copied out), one thread */
		unsigned char page[4096];
		double t0 = cpu_now();
		for (size_t i = 0; i < np; i++)
			if (fmt_reader_mem_page(r, present[i] * 4096, page, &err) < 0) {
				fprintf(stderr, "format_bench: %s\n", err.msg);
				return 1;
			}
		double td = cpu_now() - t0;
		int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
		t0 = cpu_now();
		if (fmt_reader_mem_unpack(r, fd, 1, &err) < 0) {
			fprintf(stderr, "format_bench: %s\n", err.msg);
			return 1;
		}
		double tu = cpu_now() - t0;
		close(fd);
		unlink(out);
		fmt_reader_close(r);
		/* random single-page reads from a warm file: a fresh reader (no
		 * decoded frame cached), then each read a random stored page */
		if (fmt_reader_open(&r, path, &err) < 0 || fmt_reader_mem_info(r, &mi, &err) < 0)
			return 1;
		for (unsigned i = 0; i < reads && np; i++) {
			uint64_t p = present[next() % np];
			double c = cpu_now();
			t0 = now();
			fmt_reader_mem_page(r, p * 4096, page, &err);
			lat[i] = (now() - t0) * 1e6;
			clat[i] = (cpu_now() - c) * 1e6;
		}
		fmt_reader_close(r);
		qsort(lat, reads, sizeof(double), cmp_double);
		qsort(clat, reads, sizeof(double), cmp_double);
		printf("%6u %10lld %6.2f %6.2f %9.0f %8.0f %9.0f %9.0f %8.1f %8.1f %8.1f %8.1f\n",
		       frame / 1024, (long long)st.st_size, (double)size / (double)st.st_size,
		       mi.data_length ? (double)nonzero * 4096 / (double)mi.data_length : 0.0,
		       nz_mb / cc1, nz_mb / tcn, nz_mb / td, nz_mb / tu,
		       reads ? lat[reads / 2] : 0.0, reads ? lat[reads * 99 / 100] : 0.0,
		       reads ? clat[reads / 2] : 0.0, reads ? clat[reads * 99 / 100] : 0.0);
		fflush(stdout);
	}
	unlink(path);
	free(lat);
	free(clat);
	free(present);
	return 0;
}
