/* SPDX-License-Identifier: Apache-2.0 */
/* smsnap: inspect, check, pack and unpack snapshot files. Argument parsing
 * and exit codes only; the work is in format/. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sm/format.h"
#include "sm/version.h"

#define EXIT_BAD_SNAPSHOT 1 /* the snapshot is damaged, hostile or unsupported */
#define EXIT_ERROR	  125

static const char usage_main[] =
	"Usage: smsnap COMMAND [OPTIONS]\n"
	"\n"
	"Inspect, check, pack and unpack supermachine snapshot files.\n"
	"\n"
	"Commands:\n"
	"  dump SNAP [--json]        show header, sections, metadata and memory statistics\n"
	"  verify SNAP               check every checksum, frame and padding byte\n"
	"  pack --memory RAW [--meta JSON] [--section TYPE[:INST]=FILE]... -o SNAP\n"
	"                            write a snapshot from a raw guest memory image\n"
	"  unpack-memory SNAP -o RAW write the guest memory back out as a sparse file\n"
	"\n"
	"Run `smsnap COMMAND --help` for a command's options.\n"
	"\n"
	"Exit status:\n"
	"  0    success (verify: the snapshot is intact)\n"
	"  1    the snapshot is damaged, truncated, hostile or of an unsupported version\n"
	"  125  usage error or any other failure (cannot open or write a file, ...)\n"
	"\n"
	"  -h, --help       show this help\n"
	"      --version    print the version\n";

static const char usage_dump[] =
	"Usage: smsnap dump SNAP [--json]\n"
	"\n"
	"Show the header, every section (type, instance, name, flags, offset, stored and\n"
	"raw sizes, compression ratio), the metadata and memory statistics. Checks the\n"
	"header, the section table and what it reads, not every memory frame (use verify).\n"
	"\n"
	"      --json       print one JSON object instead of text\n"
	"  -h, --help       show this help\n"
	"\n"
	"Exit status: 0 ok, 1 bad snapshot, 125 other errors.\n";

static const char usage_verify[] =
	"Usage: smsnap verify SNAP\n"
	"\n"
	"Check the header, the section table, every section's CRC32C, the metadata JSON,\n"
	"the memory bitmap, index and every memory frame (decompressed), and that all\n"
	"padding is zero. Reports the first bad section.\n"
	"\n"
	"  -h, --help       show this help\n"
	"\n"
	"Exit status: 0 the snapshot is intact, 1 it is damaged or unsupported (the message\n"
	"names the first bad section), 125 other errors (cannot open the file, usage).\n";

static const char usage_pack[] =
	"Usage: smsnap pack --memory RAW [--meta JSON] [--section TYPE[:INST]=FILE]... -o SNAP\n"
	"\n"
	"Write a snapshot from a raw guest memory image RAW (its size must be a multiple\n"
	"of 4096; holes and zero pages are not stored). The file appears under SNAP only\n"
	"when complete (temporary file, fsync, rename).\n"
	"\n"
	"  -m, --memory RAW         raw guest memory image\n"
	"      --meta JSON          metadata: a file holding one JSON object (default: a\n"
	"                           minimal object with memory_size, created, tool_version)\n"
	"      --section TYPE[:INST]=FILE\n"
	"                           add FILE as an opaque section; TYPE is vcpu, vmstate,\n"
	"                           mmio, device, dax, fuse-nodes or vsock (written\n"
	"                           optional, as smbake does) (repeatable)\n"
	"  -o, --output SNAP        snapshot to write\n"
	"      --frame-size BYTES   non-zero guest bytes per zstd frame (default 16384)\n"
	"      --level N            zstd level (default 3)\n"
	"  -j, --threads N          compression threads (default: online CPUs)\n"
	"  -h, --help               show this help\n"
	"\n"
	"Exit status: 0 ok, 125 errors.\n";

static const char usage_unpack[] =
	"Usage: smsnap unpack-memory SNAP -o RAW\n"
	"\n"
	"Write the snapshot's guest memory to RAW (created or truncated): RAW gets the\n"
	"guest memory size and only stored pages are written, so zero pages stay holes.\n"
	"\n"
	"  -o, --output RAW         file to write\n"
	"  -j, --threads N          decompression threads (default: online CPUs)\n"
	"  -h, --help               show this help\n"
	"\n"
	"Exit status: 0 ok, 1 bad snapshot, 125 other errors.\n";

static int exit_for(const struct sm_error *err)
{
	switch (err->errnum) {
	case EBADMSG:
	case ENOTSUP:
		return EXIT_BAD_SNAPSHOT;
	}
	return EXIT_ERROR;
}

static int fail(const struct sm_error *err)
{
	fprintf(stderr, "smsnap: %s\n", err->msg);
	return exit_for(err);
}

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "smsnap: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage);
	return EXIT_ERROR;
}

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* ---- dump --------------------------------------------------------------- */

static double ratio(uint64_t raw, uint64_t stored)
{
	return stored ? (double)raw / (double)stored : 0.0;
}

static json_t *section_json(const struct fmt_section_info *s)
{
	return json_pack("{s:I,s:s,s:I,s:I,s:s,s:b,s:b,s:I,s:I,s:I,s:s}", "index",
			 (json_int_t)s->index, "type", fmt_section_type_name(s->type), "type_id",
			 (json_int_t)s->type, "instance", (json_int_t)s->instance, "name", s->name,
			 "optional", (s->flags & FMT_SECF_OPTIONAL) != 0, "zstd",
			 (s->flags & FMT_SECF_ZSTD) != 0, "offset", (json_int_t)s->offset, "length",
			 (json_int_t)s->length, "raw_length", (json_int_t)s->raw_length, "crc32c",
			 "");
}

static int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'J'}, {"help", no_argument, NULL, 'h'}, {0}};
	int json = 0, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'J')
			json = 1;
		else if (c == 'h') {
			fputs(usage_dump, stdout);
			return 0;
		} else
			return usage_error(usage_dump, "%s", "bad option");
	}
	if (optind + 1 != argc)
		return usage_error(usage_dump, "%s", "dump needs exactly one SNAP");
	const char *path = argv[optind];
	struct sm_error err = {0};
	struct fmt_reader *r;
	if (fmt_reader_open(&r, path, &err) < 0)
		return fail(&err);
	const struct fmt_file_info *fi = fmt_reader_file(r);
	char *meta_text = NULL;
	json_t *meta = NULL;
	if (fmt_reader_meta(r, &meta_text, &err) < 0) {
		fmt_reader_close(r);
		return fail(&err);
	}
	json_error_t jerr;
	meta = json_loads(meta_text, 0, &jerr);
	free(meta_text);
	if (!meta) {
		fmt_reader_close(r);
		fprintf(stderr, "smsnap: %s: metadata is not valid JSON: %s\n", path, jerr.text);
		return EXIT_BAD_SNAPSHOT;
	}
	struct fmt_mem_info mi;
	int have_mem = 0;
	if (fmt_reader_find(r, FMT_SEC_MEMORY, 0, NULL) >= 0) {
		if (fmt_reader_mem_info(r, &mi, &err) < 0) {
			json_decref(meta);
			fmt_reader_close(r);
			return fail(&err);
		}
		have_mem = 1;
	}
	unsigned n = fmt_reader_section_count(r);
	if (json) {
		json_t *secs = json_array();
		for (unsigned i = 0; i < n; i++) {
			const struct fmt_section_info *s = fmt_reader_section(r, i);
			json_t *o = section_json(s);
			char crc[16];
			snprintf(crc, sizeof(crc), "%08x", s->crc);
			json_object_set_new(o, "crc32c", json_string(crc));
			json_array_append_new(secs, o);
		}
		json_t *root = json_pack(
			"{s:s,s:{s:s,s:I,s:I,s:I},s:o,s:o}", "file", path, "header", "version",
			fi->minor == 0 && fi->major == 1 ? "1.0" : "?", "flags",
			(json_int_t)fi->flags, "file_size", (json_int_t)fi->file_size, "sections",
			(json_int_t)fi->section_count, "sections", secs, "metadata", meta);
		char ver[32];
		snprintf(ver, sizeof(ver), "%u.%u", fi->major, fi->minor);
		json_object_set_new(json_object_get(root, "header"), "version", json_string(ver));
		if (have_mem) {
			json_object_set_new(
				root, "memory",
				json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "mem_size",
					  (json_int_t)mi.mem_size, "page_size",
					  (json_int_t)mi.page_size, "frame_pages",
					  (json_int_t)mi.frame_pages, "nonzero_pages",
					  (json_int_t)mi.nonzero_pages, "frames",
					  (json_int_t)mi.frame_count, "data_length",
					  (json_int_t)mi.data_length, "section_length",
					  (json_int_t)mi.section_length, "zstd_level",
					  (json_int_t)mi.level, "ratio",
					  ratio(mi.mem_size, mi.section_length), "nonzero_ratio",
					  ratio(mi.nonzero_pages * mi.page_size, mi.data_length)));
		}
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
	} else {
		printf("file:      %s\n", path);
		printf("format:    %u.%u (flags 0x%x)\n", fi->major, fi->minor, fi->flags);
		printf("size:      %llu bytes\n", (unsigned long long)fi->file_size);
		printf("sections:  %u (table at offset %llu)\n\n", fi->section_count,
		       (unsigned long long)fi->table_offset);
		printf("  #  type        inst name             flags        offset        stored "
		       "          raw   ratio  crc32c\n");
		for (unsigned i = 0; i < n; i++) {
			const struct fmt_section_info *s = fmt_reader_section(r, i);
			char flags[16];
			snprintf(flags, sizeof(flags), "%s%s",
				 s->flags & FMT_SECF_OPTIONAL ? "opt," : "",
				 s->flags & FMT_SECF_ZSTD ? "zstd" : "");
			printf("%3u  %-10s %5u %-16s %-6s %12llu %13llu %13llu %6.2f  %08x\n", i,
			       fmt_section_type_name(s->type), s->instance,
			       s->name[0] ? s->name : "-", flags[0] ? flags : "-",
			       (unsigned long long)s->offset, (unsigned long long)s->length,
			       (unsigned long long)s->raw_length, ratio(s->raw_length, s->length),
			       s->crc);
		}
		printf("\nmetadata:\n");
		char *m = json_dumps(meta, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", m ? m : "?");
		free(m);
		json_decref(meta);
		if (have_mem) {
			uint64_t pages = mi.mem_size / mi.page_size;
			printf("\nmemory:\n");
			printf("  guest memory:   %llu bytes (%llu pages of %u)\n",
			       (unsigned long long)mi.mem_size, (unsigned long long)pages,
			       mi.page_size);
			printf("  stored pages:   %llu (%.2f%%), zero pages %llu\n",
			       (unsigned long long)mi.nonzero_pages,
			       pages ? 100.0 * (double)mi.nonzero_pages / (double)pages : 0.0,
			       (unsigned long long)(pages - mi.nonzero_pages));
			printf("  frames:         %llu of %u pages, zstd level %u\n",
			       (unsigned long long)mi.frame_count, mi.frame_pages, mi.level);
			printf("  compressed:     %llu bytes of frames, %llu bytes with bitmap and "
			       "index\n",
			       (unsigned long long)mi.data_length,
			       (unsigned long long)mi.section_length);
			printf("  ratio:          %.2f of guest memory, %.2f of stored pages\n",
			       ratio(mi.mem_size, mi.section_length),
			       ratio(mi.nonzero_pages * mi.page_size, mi.data_length));
		}
		int devs = 0;
		for (unsigned i = 0; i < n; i++) {
			const struct fmt_section_info *s = fmt_reader_section(r, i);
			if (s->type != FMT_SEC_DEVICE && s->type != FMT_SEC_MMIO &&
			    s->type != FMT_SEC_DAX && s->type != FMT_SEC_FUSE_NODES &&
			    s->type != FMT_SEC_VSOCK)
				continue;
			if (!devs++)
				printf("\ndevices:\n");
			printf("  %-10s instance %u %-16s %llu bytes of state\n",
			       fmt_section_type_name(s->type), s->instance,
			       s->name[0] ? s->name : "", (unsigned long long)s->raw_length);
		}
	}
	fmt_reader_close(r);
	return 0;
}

/* ---- verify ------------------------------------------------------------- */

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage_verify, stdout);
			return 0;
		}
		return usage_error(usage_verify, "%s", "bad option");
	}
	if (optind + 1 != argc)
		return usage_error(usage_verify, "%s", "verify needs exactly one SNAP");
	const char *path = argv[optind];
	struct sm_error err = {0};
	struct fmt_reader *r;
	if (fmt_reader_open(&r, path, &err) < 0) {
		fprintf(stderr, "smsnap: verify failed: %s\n", err.msg);
		return exit_for(&err);
	}
	int bad = -1;
	int ret = fmt_reader_verify(r, &bad, &err);
	fmt_reader_close(r);
	if (ret < 0) {
		int code = err.errnum == EBADMSG || err.errnum == ENOTSUP ? EXIT_BAD_SNAPSHOT
									  : EXIT_ERROR;
		if (bad >= 0)
			fprintf(stderr, "smsnap: %s: verify failed: first bad section is %d: %s\n",
				path, bad, err.msg);
		else
			fprintf(stderr, "smsnap: %s: verify failed: %s\n", path, err.msg);
		return code;
	}
	printf("%s: OK\n", path);
	return 0;
}

/* ---- pack --------------------------------------------------------------- */

static int read_file(const char *path, size_t max, char **data, size_t *len, struct sm_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size > max) {
		close(fd);
		return sm_error_set(err, EFBIG, "%s: cannot stat or larger than %zu bytes", path,
				    max);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			free(buf);
			close(fd);
			return sm_error_errno(err, e, "cannot read %s", path);
		}
		got += (size_t)n;
	}
	close(fd);
	if (!buf)
		return sm_error_errno(err, ENOMEM, "cannot allocate");
	buf[got] = '\0';
	*data = buf;
	*len = got;
	return 0;
}

static int type_from_name(const char *s, size_t n)
{
	for (uint32_t t = FMT_SEC_VCPU; t <= FMT_SEC_VSOCK; t++)
		if (t != FMT_SEC_MEMORY && strlen(fmt_section_type_name(t)) == n &&
		    !strncmp(fmt_section_type_name(t), s, n))
			return (int)t;
	return -1;
}

/* Feed RAW to the writer, skipping holes with SEEK_DATA/SEEK_HOLE. */
static int pack_memory(struct fmt_writer *w, int fd, uint64_t size, struct sm_error *err)
{
	size_t bufsz = 4u << 20;
	char *buf = malloc(bufsz);
	if (!buf)
		return sm_error_errno(err, ENOMEM, "cannot allocate");
	int ret = fmt_writer_mem_begin(w, size, err);
	uint64_t pos = 0;
	while (ret == 0 && pos < size) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
		uint64_t dstart = data < 0 ? size : (uint64_t)data / 4096 * 4096;
		if (dstart > size)
			dstart = size;
		if (dstart > pos) {
			ret = fmt_writer_mem_skip(w, dstart - pos, err);
			pos = dstart;
			continue;
		}
		off_t hole = lseek(fd, (off_t)pos, SEEK_HOLE);
		uint64_t dend = hole < 0 ? size : ((uint64_t)hole + 4095) / 4096 * 4096;
		if (dend > size || dend <= pos)
			dend = size;
		while (ret == 0 && pos < dend) {
			size_t n = dend - pos < bufsz ? (size_t)(dend - pos) : bufsz;
			ssize_t got = pread(fd, buf, n, (off_t)pos);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				ret = sm_error_errno(err, got < 0 ? errno : EIO,
						     "cannot read the memory image");
				break;
			}
			size_t whole = (size_t)got / 4096 * 4096;
			if (!whole) {
				ret = sm_error_set(err, EIO, "short read from the memory image");
				break;
			}
			ret = fmt_writer_mem_write(w, buf, whole, err);
			pos += whole;
		}
	}
	free(buf);
	if (ret == 0)
		ret = fmt_writer_mem_end(w, err);
	return ret;
}

struct sec_arg {
	int type;
	unsigned instance;
	const char *file;
};

static int cmd_pack(int argc, char **argv)
{
	static const struct option opts[] = {{"memory", required_argument, NULL, 'm'},
					     {"meta", required_argument, NULL, 'M'},
					     {"section", required_argument, NULL, 'S'},
					     {"output", required_argument, NULL, 'o'},
					     {"frame-size", required_argument, NULL, 'F'},
					     {"level", required_argument, NULL, 'L'},
					     {"threads", required_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	const char *mem = NULL, *meta = NULL, *out = NULL;
	struct fmt_writer_opts wo = {.threads = default_threads()};
	struct sec_arg secs[64];
	unsigned nsecs = 0;
	unsigned long long v;
	int c;
	while ((c = getopt_long(argc, argv, "hm:o:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mem = optarg;
			break;
		case 'M':
			meta = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'F':
			if (parse_uint(optarg, 64u << 20, &v) < 0 || !v || v % 4096)
				return usage_error(usage_pack, "bad --frame-size '%s'", optarg);
			wo.frame_size = (uint32_t)v;
			break;
		case 'L':
			if (parse_uint(optarg, 22, &v) < 0 || !v)
				return usage_error(usage_pack, "bad --level '%s'", optarg);
			wo.level = (int)v;
			break;
		case 'j':
			if (parse_uint(optarg, 64, &v) < 0 || !v)
				return usage_error(usage_pack, "bad --threads '%s'", optarg);
			wo.threads = (unsigned)v;
			break;
		case 'S': {
			const char *eq = strchr(optarg, '=');
			if (!eq || nsecs == 64)
				return usage_error(usage_pack, "bad --section '%s'", optarg);
			const char *colon = memchr(optarg, ':', (size_t)(eq - optarg));
			size_t tlen = (size_t)((colon ? colon : eq) - optarg);
			int t = type_from_name(optarg, tlen);
			unsigned long long inst = 0;
			if (colon) {
				char num[32];
				size_t nl = (size_t)(eq - colon - 1);
				if (nl == 0 || nl >= sizeof(num))
					return usage_error(usage_pack, "bad --section '%s'",
							   optarg);
				memcpy(num, colon + 1, nl);
				num[nl] = '\0';
				if (parse_uint(num, UINT32_MAX, &inst) < 0)
					return usage_error(usage_pack, "bad --section '%s'",
							   optarg);
			}
			if (t < 0)
				return usage_error(usage_pack, "unknown section type in '%s'",
						   optarg);
			secs[nsecs++] = (struct sec_arg){t, (unsigned)inst, eq + 1};
			break;
		}
		case 'h':
			fputs(usage_pack, stdout);
			return 0;
		default:
			return usage_error(usage_pack, "%s", "bad option");
		}
	}
	if (optind != argc)
		return usage_error(usage_pack, "unexpected argument '%s'", argv[optind]);
	if (!mem || !out)
		return usage_error(usage_pack, "%s", "pack needs --memory RAW and -o SNAP");

	struct sm_error err = {0};
	int fd = open(mem, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sm_error_errno(&err, errno, "cannot open %s", mem);
		fputs("smsnap: ", stderr);
		fputs(err.msg, stderr);
		fputc('\n', stderr);
		return EXIT_ERROR;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size % 4096) {
		close(fd);
		fprintf(stderr, "smsnap: %s: not a regular file whose size is a multiple of 4096\n",
			mem);
		return EXIT_ERROR;
	}
	char *meta_json = NULL;
	size_t meta_len;
	if (meta) {
		if (read_file(meta, 16u << 20, &meta_json, &meta_len, &err) < 0) {
			close(fd);
			fprintf(stderr, "smsnap: %s\n", err.msg);
			return EXIT_ERROR;
		}
	} else {
		char created[32];
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
		char fver[16];
		snprintf(fver, sizeof(fver), "%d.%d", FMT_VERSION_MAJOR, FMT_VERSION_MINOR);
		json_t *j = json_pack("{s:s,s:I,s:s,s:s}", "format_version", fver, "memory_size",
				      (json_int_t)st.st_size, "created", created, "tool_version",
				      SM_VERSION);
		meta_json = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(j);
	}
	struct fmt_writer *w = NULL;
	int ret = fmt_writer_create(&w, out, &wo, &err);
	if (ret == 0)
		ret = fmt_writer_add_meta(w, meta_json, &err);
	for (unsigned i = 0; ret == 0 && i < nsecs; i++) {
		char *data;
		size_t len;
		ret = read_file(secs[i].file, 1u << 30, &data, &len, &err);
		if (ret == 0) {
			uint32_t fl = FMT_SECF_ZSTD;
			if (secs[i].type == FMT_SEC_VSOCK) /* older readers skip it */
				fl |= FMT_SECF_OPTIONAL;
			ret = fmt_writer_add(w, (uint32_t)secs[i].type, fl, secs[i].instance, NULL,
					     data, len, &err);
			free(data);
		}
	}
	if (ret == 0)
		ret = pack_memory(w, fd, (uint64_t)st.st_size, &err);
	if (ret == 0)
		ret = fmt_writer_commit(w, &err);
	fmt_writer_free(w);
	free(meta_json);
	close(fd);
	if (ret < 0) {
		fprintf(stderr, "smsnap: pack %s: %s\n", out, err.msg);
		return EXIT_ERROR;
	}
	return 0;
}

/* ---- unpack-memory ------------------------------------------------------ */

static int cmd_unpack(int argc, char **argv)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
					     {"threads", required_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	const char *out = NULL;
	unsigned threads = default_threads();
	unsigned long long v;
	int c;
	while ((c = getopt_long(argc, argv, "ho:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'j':
			if (parse_uint(optarg, 64, &v) < 0 || !v)
				return usage_error(usage_unpack, "bad --threads '%s'", optarg);
			threads = (unsigned)v;
			break;
		case 'h':
			fputs(usage_unpack, stdout);
			return 0;
		default:
			return usage_error(usage_unpack, "%s", "bad option");
		}
	}
	if (optind + 1 != argc || !out)
		return usage_error(usage_unpack, "%s", "unpack-memory needs SNAP and -o RAW");
	struct sm_error err = {0};
	struct fmt_reader *r;
	if (fmt_reader_open(&r, argv[optind], &err) < 0)
		return fail(&err);
	int fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		sm_error_errno(&err, errno, "cannot create %s", out);
		fmt_reader_close(r);
		fprintf(stderr, "smsnap: %s\n", err.msg);
		return EXIT_ERROR;
	}
	int ret = fmt_reader_mem_unpack(r, fd, threads, &err);
	if (ret == 0 && fsync(fd) < 0)
		ret = sm_error_errno(&err, errno, "cannot fsync %s", out);
	close(fd);
	fmt_reader_close(r);
	if (ret < 0)
		return fail(&err);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_ERROR;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("smsnap %s (snapshot format %u.%u)\n", SM_VERSION, FMT_VERSION_MAJOR,
		       FMT_VERSION_MINOR);
		return 0;
	}
	/* getopt sees the command's own arguments, with the command as argv[0]. */
	argc--;
	argv++;
	optind = 1;
	if (!strcmp(cmd, "dump"))
		return cmd_dump(argc, argv);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argc, argv);
	if (!strcmp(cmd, "pack"))
		return cmd_pack(argc, argv);
	if (!strcmp(cmd, "unpack-memory"))
		return cmd_unpack(argc, argv);
	fprintf(stderr, "smsnap: unknown command '%s'\n\n%s", cmd, usage_main);
	return EXIT_ERROR;
}
