/* cli.h - what the verbs of the command-line front-end share. */
#ifndef LT_CLI_H
#define LT_CLI_H

#include <cjson/cJSON.h>

#include "loratool.h"

/* Exit codes (spec/cli.md). */
enum {
    EXIT_LIMIT = 1,       /* audit, verify, diff: a check failed   */
    EXIT_USAGE = 2,
    EXIT_INPUT = 3,       /* invalid or unsupported input          */
    EXIT_IO = 4,
};

/* One verb: name, entry point, one-line summary for `loratool help`. */
typedef struct cli_verb {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_verb;

int cmd_inspect(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_combine(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_diff(int argc, char **argv);

/* TEXT with control characters (C0, DEL, C1) written as \xNN, so that a
 * name from a file prints as one line and cannot drive the terminal;
 * malloc'd, NULL when out of memory.  Every error and warning line and
 * inspect's text output go through it. */
char *cli_escape(const char *text);
/* Print "loratool: <message>" for a library error; return its exit code. */
int cli_fail(const lt_error *err);
/* Print "loratool: <formatted>" (escaped); return EXIT_CODE. */
int cli_error(int exit_code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "loratool: <formatted>" plus a hint to --help; return EXIT_USAGE. */
int cli_usage(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a warning line "loratool: warning: ..." on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print a JSON value (pretty, newline-terminated) on stdout and free it.
 * Returns 0, or EXIT_IO when stdout could not be written. */
int cli_print_json(cJSON *value);
/* Flush stdout and report a write error (EXIT_IO) if any, else 0. */
int cli_finish_stdout(void);

/* ---- describe.c: the shared description of a file or adapter ---- */

typedef struct cli_describe_opts {
    bool with_tensors;        /* add tensor_list                            */
    const char *base_path;    /* NULL, or a base model to compare with      */
    /* what loralib checkpoints leave out (NULL: nothing known); the base
     * is filled in by cli_describe, describe_only is always set */
    const lt_adapter_open_options *adapter_opts;
} cli_describe_opts;

/* Describe PATH as a JSON object with the keys of spec/cli.md (format,
 * tensors, parameters, bytes, dtypes, metadata, adapter, base, ...).
 * *adapter_out (if not NULL) receives the opened adapter, or NULL when PATH
 * is not an adapter; *base_out likewise the opened base.  The caller frees
 * all three.  Returns NULL with err set on failure. */
cJSON *cli_describe(const char *path, const cli_describe_opts *opts, lt_adapter **adapter_out,
                    lt_source **base_out, lt_error *err);

/* Print the description as human-readable text on stdout. */
void cli_print_description(const cJSON *desc);

/* ---- resolve.c: one grammar for every input argument ----
 * spec/cli.md, "Input arguments": an existing path wins; ARCHIVE#PATH picks
 * a folder or file inside an archive; a models--org--name cache folder,
 * PATH@REV or a hub id (org/name[@REV]) opens its snapshot in the Hugging
 * Face cache (offline); a trailing :SCALE is split off where the rest
 * resolves.  An archive input is spooled (lt_archive_extract) and stays
 * open until exit.  The role picks the archive limits, and for adapters a
 * file of an adapter directory (adapter_model.safetensors, ...) names the
 * directory. */
typedef enum cli_role {
    CLI_INPUT_ADAPTER,  /* adapter limits; a file of an adapter directory names it */
    CLI_INPUT_MODEL,    /* model limits */
    CLI_INPUT_ANY,      /* an adapter or a model (convert): model limits, adapter files name their directory */
    CLI_INPUT_FILE,     /* described as given (inspect, diff): model limits */
} cli_role;

/* 0 with *path the local path to open (owned by the resolver, valid until
 * exit); else the exit code after printing the error. */
int cli_resolve(const char *verb, const char *arg, cli_role role, const char **path);
/* The same with :SCALE allowed: *scale is 1 unless ARG carries one.  When
 * the part before the colon resolves but the scale is no finite decimal
 * number (nan, inf, 1e400, abc, 0x1p0) it is a usage error. */
int cli_resolve_scaled(const char *verb, const char *arg, cli_role role, const char **path, double *scale);
/* The file or directory on disk ARG comes from (the archive itself, the
 * cache snapshot), without opening anything; malloc'd, NULL when ARG does
 * not resolve.  For the output clash checks. */
char *cli_input_origin(const char *arg);
/* TEXT with the private paths of opened archives written as ARCHIVE#PATH;
 * malloc'd (NULL when out of memory). */
char *cli_shown_paths(const char *text);
/* Take the options every verb accepts (--archive-limit NAME=VALUE, kept
 * for the archives opened later) out of argv.  0, or EXIT_USAGE after
 * printing why. */
int cli_take_global_options(int *argc, char **argv);
/* Async-signal-safe: remove the private folders of opened archives. */
void cli_remove_archive_views(void);

/* "dir:0.5" -> ("dir", 0.5) by cli_resolve_scaled for an adapter input;
 * *path malloc'd.  0, or the exit code after printing the error. */
int cli_split_scale(const char *verb, const char *arg, char **path, double *weight);

/* ---- outputs.c ---- */
/* 0 when writing OUT replaces no input; else prints a usage error naming
 * the input and returns EXIT_USAGE.  The inputs are the n_inputs argument
 * strings (an ADAPTER:SCALE is taken as ADAPTER) plus extra (or NULL).  An
 * existing OUT clashes when it is an input file or directory, a directory
 * that holds one (directly, or an input directory anywhere below it), or
 * one of an input directory's entries or an index's shard files; identity
 * is device and inode after symlinks, so links count.  A new file inside an
 * input's directory is fine. */
int cli_check_output(const char *verb, const char *out, const char *extra, int n_inputs, char *const *inputs);
/* Remember OUT for the signal handlers (cli_check_output does it): on
 * SIGINT, SIGTERM, SIGHUP or SIGBUS they remove this process's temporaries
 * beside OUT (lt_remove_temporaries), print one line and end the program
 * (SIGBUS, a mapped input truncated: "input file changed or truncated
 * while reading", exit 4; the others die of their signal). */
void cli_guard_output(const char *out);
/* lt_adapter_save_peft, or, when OUT's suffix names an archive (.zip,
 * .tar, .tar.gz, ...), the same directory packed as that archive
 * (lt_archive_write_dir; mtime from SOURCE_DATE_EPOCH, else 0). */
/* The file-type suffix OUT ends in (".bin", ".zip", ".gguf", ...: a name
 * no one gives a directory), or NULL. */
const char *cli_file_suffix(const char *out);
/* 0 when OUT names an adapter directory, an archive, or (GGUF_OK) a .gguf
 * file; else a usage error (checked before any work is done). */
int cli_check_adapter_out(const char *verb, const char *out, bool gguf_ok);
lt_status cli_save_peft(const lt_adapter *ad, const char *out, lt_dtype dtype, lt_error *err);
void cli_install_signal_handlers(void);

/* ---- adapter_gguf.c ---- */
/* Make *ad fit BASE (opened from BASE_PATH) for merge and verify: a PEFT
 * adapter over a GGUF model becomes its GGUF view (lt_adapter_for_gguf), a
 * GGUF LoRA over a safetensors model its Hugging Face view (lt_adapter_to_hf,
 * architecture from the model directory's config.json); then *original holds
 * the adapter the view reads (close the view first).  A GGUF LoRA over a
 * GGUF model must have the model's architecture.  Returns 0, or the exit
 * code after printing the error. */
int cli_adapter_for_base(const char *base_path, lt_source *base, lt_adapter **ad, lt_adapter **original);

/* ---- progress.c ---- */
/* A progress line on stderr for the long verbs ("resizing: 12/224 modules,
 * 3 s"), rewritten in place at most ten times a second and ended with a
 * newline at done == total.  Only when stderr is a terminal and the verb
 * prints no JSON: never in pipes, logs or machine-readable output. */
typedef struct cli_progress {
    const char *what, *unit;
    double start, last;          /* CLOCK_MONOTONIC seconds */
} cli_progress;
/* The callback to pass to the library with P as its context, or NULL when
 * no progress is to be shown (then P is unused). */
lt_progress_fn cli_progress_start(cli_progress *p, const char *what, const char *unit, bool json);

/* ---- surgery_common.c ---- */
/* Apply --rank ('r'), --energy ('e') or --sv-ratio (other) to rule;
 * 0 or a usage exit code. */
int cli_parse_rank_rule(const char *verb, int option, const char *arg, lt_rank_rule *rule);
/* Save the model an operation returned (STATUS) to OUT: a GGUF LoRA when
 * gguf_by_suffix and OUT ends in .gguf, else a PEFT directory (F32; a model
 * with GGUF names mapped back through BASE, which it then needs); then
 * print the report.  Frees model and report; returns the exit code. */
int cli_finish_surgery(lt_status status, lt_adapter *model, const char *out, bool gguf_by_suffix, const char *base,
                       lt_surgery_report *report, bool json, lt_error *err);
/* What resize and combine share on their command lines. */
typedef struct cli_surgery_args {
    const char *out;
    const char *base;            /* --base: names of GGUF LoRA inputs */
    bool json;
    lt_rank_rule rule;
} cli_surgery_args;
/* Take one of the shared options (-o, --base 'b', --rank 'r', --energy 'e',
 * --sv-ratio 'x', --json 'j', --help 'h'): true when OPTION is one of them; then *rc
 * is -1 to go on, else the exit code to return now. */
bool cli_surgery_option(const char *verb, int option, const char *arg, const char *usage,
                        cli_surgery_args *a, int *rc);
/* Print the per-module report (text or JSON); 0 or EXIT_IO. */
int cli_print_surgery_report(const char *out_dir, const lt_surgery_report *r, bool json);

/* ---- args.c ---- */
/* Parse a count with an optional suffix: "5000", "5M", "1.5B", "2k"
 * (k/K=1e3, M=1e6, B/G=1e9, T=1e12).  Returns false on junk or overflow. */
bool cli_parse_count(const char *text, uint64_t *out);
/* Parse a byte size: "5GB", "500MB", "2GiB", "1048576" (KB/MB/GB decimal,
 * KiB/MiB/GiB binary).  Returns false on junk or overflow. */
bool cli_parse_size(const char *text, uint64_t *out);

/* Group-separated integer ("1,234,567") into buf; returns buf. */
const char *cli_count(uint64_t n, char *buf, size_t size);


/* ---- loralib_opts.c: what a loralib checkpoint cannot tell ---- */

#define CLI_ENABLE_LORA_MAX 64

/* --alpha A, --enable-lora MASK, --fan-in-fan-out: option ids for
 * getopt_long (spread CLI_LORALIB_OPTIONS into a command's table) */
enum { CLI_OPT_ALPHA = 0x1100, CLI_OPT_ENABLE_LORA, CLI_OPT_FAN_IN_FAN_OUT };
#define CLI_LORALIB_OPTIONS                                                   \
    {"alpha", required_argument, NULL, CLI_OPT_ALPHA},                        \
    {"enable-lora", required_argument, NULL, CLI_OPT_ENABLE_LORA},            \
    {"fan-in-fan-out", no_argument, NULL, CLI_OPT_FAN_IN_FAN_OUT}
#define CLI_LORALIB_USAGE                                                                         \
    "  --alpha A        lora_alpha of loralib checkpoints (their files do not record it)\n"      \
    "  --enable-lora M  loralib merged layers: groups enabled, e.g. 1,0,1 (default: all)\n"      \
    "  --fan-in-fan-out loralib: square base weights are stored [in, out] (GPT-2 Conv1D)\n"

typedef struct cli_loralib {
    lt_adapter_open_options open;          /* base is set by the command  */
    bool mask[CLI_ENABLE_LORA_MAX];
} cli_loralib;

/* Handle option ID (with ARG) when it is one of CLI_LORALIB_OPTIONS:
 * returns 1 when handled, 0 when not ours, or -EXIT_USAGE after printing
 * the usage error.  L must be zeroed before the first call. */
int cli_loralib_option(const char *verb, int id, const char *arg, cli_loralib *l);
/* True when PATH is a single weights file holding loralib LoRA keys
 * (names ending in ".lora_A" / ".lora_B"); cli_source_is_loralib asks the
 * same of an open source. */
bool cli_is_loralib(const char *path);
bool cli_source_is_loralib(const lt_source *src);

#endif
