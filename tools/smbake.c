/* SPDX-License-Identifier: Apache-2.0 */
/* smbake: argument parsing and exit codes only; the work is in the library. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/oci.h"
#include "sm/version.h"
#include "sm/vm.h"
#include "run_opts.h"

static const char usage[] =
	"Usage: smbake IMAGE -o SNAP [options]\n"
	"       smbake --unpack-only IMAGE -o DIR [options]\n\n"
	"Pull IMAGE, boot it once in a microVM with its root filesystem shared over\n"
	"virtio-fs, wait for the guest agent, run the --warmup command if any, and\n"
	"capture the VM into the snapshot SNAP (restore it with smrestore). Baked\n"
	"snapshots are cached by their bake key: a second smbake of the same inputs\n"
	"only places the cached snapshot at SNAP.\n"
	"With --unpack-only, pull and unpack IMAGE into the root filesystem DIR and\n"
	"write its run configuration to DIR.config.json (no VM is started).\n\n"
	"IMAGE is one of:\n"
	"  [REGISTRY/]REPO[:TAG][@DIGEST]  a registry image (Docker defaults: docker.io,\n"
	"                                  library/, latest); localhost and 127.0.0.1\n"
	"                                  registries are reached over plain http\n"
	"  oci:DIR[:TAG]                   an OCI image layout directory\n"
	"  docker-archive:FILE             a `docker save` tarball\n\n"
	"Options:\n"
	"  -o, --output PATH   output snapshot file (or directory with --unpack-only)\n"
	"  -m, --memory MIB    guest memory in MiB (default 256)\n"
	"      --cpus N        vCPUs (default 1)\n"
	"  -e, --env K=V       add to the image's Env for the warm-up (repeatable;\n"
	"                      part of the bake key)\n"
	"      --warmup CMD    run /bin/sh -c CMD in the image before the capture\n"
	"                      (a non-zero exit fails the bake)\n"
	"      --dax[=MIB]     map files through a DAX window (default 1024 MiB)\n"
	"      --kernel FILE   guest vmlinux (default $SM_KERNEL)\n"
	"      --agent FILE    static guest agent (default $SM_AGENT, else\n"
	"                      ../agent/sminit next to this program)\n"
	"      --platform P    os/arch[/variant] to pick from a multi-platform image\n"
	"                      (default: this host's)\n"
	"      --no-cache      always bake (the cached snapshot is replaced)\n"
	"      --no-link       copy to SNAP, never hardlink it to the cache entry\n"
	"      --cache DIR     cache directory (default $SM_CACHE, else\n"
	"                      $XDG_CACHE_HOME/supermachine, else ~/.cache/supermachine)\n"
	"      --insecure      allow plain http and unverified TLS for any registry\n"
	"      --parallel N    concurrent layer downloads (default 3)\n"
	"      --console FILE  write the guest console to FILE ('-': stderr;\n"
	"                      default: discarded)\n"
	"      --timeout SECS  how long to wait for the guest agent (default 120)\n"
	"      --unpack-only   pull and unpack only; PATH must not exist or be empty\n"
	"      --json          print one JSON object with the result and phase\n"
	"                      timings on stdout (warm-up output goes to stderr)\n"
	"      --progress      print the progress lines with elapsed times on stderr\n"
	"                      even when it is not a terminal (also with --json)\n"
	"  -q, --quiet         no progress display\n"
	"  -h, --help          show this help\n"
	"      --version       print the version\n\n"
	"Credentials come from $DOCKER_CONFIG/config.json or ~/.docker/config.json.\n"
	"Exit status: 0 on success, 125 on a supermachine error (nothing is left at\n"
	"SNAP then).\n";

enum {
	OPT_UNPACK = 256,
	OPT_PLATFORM,
	OPT_INSECURE,
	OPT_PARALLEL,
	OPT_CACHE,
	OPT_VERSION,
	OPT_CPUS,
	OPT_WARMUP,
	OPT_DAX,
	OPT_KERNEL,
	OPT_AGENT,
	OPT_NO_CACHE,
	OPT_NO_LINK,
	OPT_CONSOLE,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_PROGRESS,
};

static int fail(const char *msg)
{
	fprintf(stderr, "smbake: %s\n", msg);
	return 125;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Parse a decimal in [lo, hi]; 0 or -1. */
static int num_arg(const char *v, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || !*v || *end || *v == '-' || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

/* ctx: the start time (ms) to print the elapsed time from, or NULL. */
static void show_progress(void *ctx, const char *phase, const char *detail)
{
	if (ctx)
		fprintf(stderr, "smbake: %s %s (%.0f ms)\n", phase, detail,
			now_ms() - *(const double *)ctx);
	else
		fprintf(stderr, "smbake: %s %s\n", phase, detail);
}

static const char *how_name(enum bake_publish_how h)
{
	switch (h) {
	case BAKE_PUBLISH_SAME:
		return "already in place";
	case BAKE_PUBLISH_CLONE:
		return "reflinked";
	case BAKE_PUBLISH_LINK:
		return "hardlinked";
	default:
		return "copied";
	}
}

int main(int argc, char **argv)
{
	double t_start = now_ms();
	static const struct option longopts[] = {
		{"unpack-only", no_argument, NULL, OPT_UNPACK},
		{"platform", required_argument, NULL, OPT_PLATFORM},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"parallel", required_argument, NULL, OPT_PARALLEL},
		{"cache", required_argument, NULL, OPT_CACHE},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{"output", required_argument, NULL, 'o'},
		{"memory", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, OPT_CPUS},
		{"env", required_argument, NULL, 'e'},
		{"warmup", required_argument, NULL, OPT_WARMUP},
		{"dax", optional_argument, NULL, OPT_DAX},
		{"kernel", required_argument, NULL, OPT_KERNEL},
		{"agent", required_argument, NULL, OPT_AGENT},
		{"no-cache", no_argument, NULL, OPT_NO_CACHE},
		{"no-link", no_argument, NULL, OPT_NO_LINK},
		{"console", required_argument, NULL, OPT_CONSOLE},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"json", no_argument, NULL, OPT_JSON},
		{"progress", no_argument, NULL, OPT_PROGRESS},
		{NULL, 0, NULL, 0},
	};
	struct bake_image_opts bo = {.console_fd = -1, .out_fd = 1, .err_fd = 2};
	const char *out = NULL, *cache_dir = NULL, *kernel = NULL, *agent = NULL;
	const char *console = NULL;
	int unpack_only = 0, quiet = 0, json = 0, progress = 0, c;
	unsigned long n;
	struct sm_error err = {0};
	char msg[SM_ERROR_MSG_MAX + 256];
	const char **env = calloc((size_t)argc + 1, sizeof(*env));
	if (!env)
		return fail("out of memory");
	uint32_t envc = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:m:e:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case OPT_UNPACK:
			unpack_only = 1;
			break;
		case OPT_PLATFORM:
			if (oci_platform_parse(optarg, &bo.pull.platform, &err) < 0)
				return fail(err.msg);
			break;
		case OPT_INSECURE:
			bo.pull.insecure = 1;
			break;
		case OPT_PARALLEL:
			if (num_arg(optarg, 1, 32, &n) < 0)
				return fail("--parallel wants a number from 1 to 32");
			bo.pull.parallel = (int)n;
			break;
		case OPT_CACHE:
			cache_dir = optarg;
			break;
		case 'm':
			if (num_arg(optarg, 16, 3072, &n) < 0)
				return fail("--memory wants MiB from 16 to 3072");
			bo.mem_mib = n;
			break;
		case OPT_CPUS:
			if (num_arg(optarg, 1, 64, &n) < 0)
				return fail("--cpus wants a number from 1 to 64");
			bo.ncpus = (int)n;
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				snprintf(msg, sizeof(msg), "--env wants K=V, got '%.200s'", optarg);
				return fail(msg);
			}
			env[envc++] = optarg;
			break;
		case OPT_WARMUP:
			if (!*optarg)
				return fail("--warmup wants a shell command");
			bo.warmup = optarg;
			break;
		case OPT_DAX:
			n = 1024;
			if (optarg && num_arg(optarg, 2, VM_DAX_WINDOW_MAX_MIB, &n) < 0) {
				snprintf(msg, sizeof(msg), "--dax wants MiB from 2 to %d",
					 VM_DAX_WINDOW_MAX_MIB);
				return fail(msg);
			}
			bo.dax_mib = n;
			break;
		case OPT_KERNEL:
			kernel = optarg;
			break;
		case OPT_AGENT:
			agent = optarg;
			break;
		case OPT_NO_CACHE:
			bo.no_cache = 1;
			break;
		case OPT_NO_LINK:
			bo.no_link = 1;
			break;
		case OPT_CONSOLE:
			console = optarg;
			break;
		case OPT_TIMEOUT:
			if (num_arg(optarg, 1, 86400, &n) < 0)
				return fail("--timeout wants seconds from 1 to 86400");
			bo.timeout_ms = (int)n * 1000;
			break;
		case OPT_JSON:
			json = 1;
			break;
		case OPT_PROGRESS:
			progress = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case OPT_VERSION:
			printf("smbake %s\n", SM_VERSION);
			return 0;
		default:
			snprintf(msg, sizeof(msg),
				 "unknown or incomplete option '%s' (see smbake --help)",
				 argv[optind - 1]);
			return fail(msg);
		}
	}
	if (optind >= argc)
		return fail("missing IMAGE (see smbake --help)");
	if (optind + 1 < argc)
		return fail("too many arguments (see smbake --help)");
	if (!out)
		return fail("missing -o PATH (see smbake --help)");
	const char *image = argv[optind];
	int tty = isatty(STDERR_FILENO);
	bo.pull.progress = !quiet && !json && tty;

	if (unpack_only) {
		struct cache *cache;
		if (cache_open(cache_dir, &cache, &err) < 0)
			return fail(err.msg);
		int r = oci_unpack_to(cache, image, out, &bo.pull, &err);
		cache_close(cache);
		if (r < 0)
			return fail(err.msg);
		return 0;
	}

	if (!kernel) {
		kernel = getenv("SM_KERNEL");
		if (!kernel || !*kernel)
			return fail("no guest kernel: pass --kernel or set SM_KERNEL "
				    "(scripts/setup.sh builds one)");
	}
	char *agent_path = agent ? strdup(agent) : sm_opt_default_agent();
	if (!agent_path)
		return fail("cannot locate the guest agent: pass --agent or set SM_AGENT");
	if (access(agent_path, R_OK) != 0) {
		snprintf(msg, sizeof(msg),
			 "no guest agent at %.300s: pass --agent or set SM_AGENT "
			 "(the build makes agent/sminit)",
			 agent_path);
		free(agent_path);
		return fail(msg);
	}
	if (console) {
		if (!strcmp(console, "-")) {
			bo.console_fd = 2;
		} else {
			bo.console_fd =
				open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (bo.console_fd < 0) {
				snprintf(msg, sizeof(msg), "cannot open console file %.300s: %s",
					 console, strerror(errno));
				return fail(msg);
			}
		}
	}
	signal(SIGPIPE, SIG_IGN);
	bo.image = image;
	bo.out_path = out;
	bo.kernel_path = kernel;
	bo.agent_path = agent_path;
	bo.env = env;
	bo.envc = envc;
	if (json)
		bo.out_fd = 2; /* stdout carries only the JSON object */
	if (progress) {
		bo.progress = show_progress;
		bo.progress_ctx = &t_start;
	} else if (!quiet && !json && tty) {
		bo.progress = show_progress;
	}

	struct cache *cache;
	if (cache_open(cache_dir, &cache, &err) < 0) {
		free(agent_path);
		return fail(err.msg);
	}
	struct bake_image_result res;
	int r = bake_image(cache, &bo, &res, &err);
	cache_close(cache);
	free(agent_path);
	free(env);
	if (bo.console_fd > 2)
		close(bo.console_fd);
	if (r < 0 && (err.errnum == ETIMEDOUT || err.errnum == ECANCELED) && bo.console_fd < 0) {
		/* The guest did not come up, or died: its console says why. */
		snprintf(msg, sizeof(msg),
			 "%s (rerun with --console FILE to see the guest's console)", err.msg);
		return fail(msg);
	}
	if (r < 0)
		return fail(err.msg);
	double total = now_ms() - t_start;

	if (json) {
		json_t *j = json_pack(
			"{s:s, s:s, s:s, s:s, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
			"s:f}",
			"snapshot", out, "image", image, "image_digest", res.image_digest,
			"bake_key", res.key, "cache_hit", res.cache_hit, "pull_ms", res.pull_ms,
			"unpack_ms", res.unpack_ms, "boot_ms", res.boot_ms, "ready_ms",
			res.ready_ms, "warmup_ms", res.warmup_ms, "capture_ms", res.capture_ms,
			"write_ms", res.write_ms, "total_ms", total);
		if (!j)
			return fail("out of memory");
		json_object_set_new(j, "cached_path", json_string(res.cached_path));
		json_object_set_new(j, "chain_id", json_string(res.chain_id));
		json_object_set_new(j, "publish_ms", json_real(res.publish_ms));
		json_object_set_new(j, "placed", json_string(how_name(res.how)));
		char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
		json_decref(j);
		if (!s)
			return fail("out of memory");
		int ok = printf("%s\n", s) > 0 && fflush(stdout) == 0;
		free(s);
		if (!ok)
			return fail("cannot write to stdout");
	} else if (!quiet) {
		if (res.cache_hit)
			fprintf(stderr, "smbake: %s ready: cache hit, %s from %s in %.0f ms\n", out,
				how_name(res.how), res.cached_path, total);
		else
			fprintf(stderr, "smbake: %s ready: baked in %.1f s (cached as %s)\n", out,
				total / 1000, res.cached_path);
	}
	return 0;
}
