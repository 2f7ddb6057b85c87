#!/usr/bin/python3
"""Expected results for tests/test_regex.c, computed by Python's own `re`.

lib/regex.c re-implements the part of Python's `re` that PEFT adapter
configs use (target_modules as a regex string, rank_pattern/alpha_pattern
keys).  Its test must not trust our own reading of Python's rules, so every
expected result here comes from re.fullmatch / re.search / re.compile.

Usage:
    python3 testdata/make_regex_cases.py > tests/regex_cases.inc
        Regenerate the checked-in table (after editing the lists below).
    /usr/bin/python3 testdata/make_regex_cases.py OUTDIR
        What tests/run.sh does: writes OUTDIR/regex_cases.inc and fails if
        tests/regex_cases.inc differs from it in anything but its header
        comment (a stale table, or a Python whose `re` answers differently).

The table holds:
  regex_cases[]    {pattern, subject, fullmatch, search}: patterns Python
                   compiles, each crossed with a list of subjects;
  regex_rejects[]  {pattern, python_rejects, python_error}: patterns Python
                   rejects (we must reject them too) and patterns Python
                   accepts that lib/regex.c refuses on purpose (lookbehind,
                   backreferences, possessive quantifiers, ...; we must
                   answer LT_ERR_UNSUPPORTED for these).

Subjects are ASCII: lib/regex.c matches bytes, and Python's default mode
counts code points, so non-ASCII subjects are tested by hand in the C test.
"""
import os
import random
import re
import sys
import warnings

# ---------------------------------------------------------------- subjects

# Module names as they appear in real models, with a few near misses.
MODULE_NAMES = [
    # llama / mistral / qwen2
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
    "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
    "model.layers.31.self_attn.q_proj", "model.layers.10.mlp.gate_proj",
    "model.layers.10.mlp.up_proj", "model.layers.10.mlp.down_proj",
    "model.layers.0.input_layernorm", "model.embed_tokens", "model.norm", "lm_head",
    "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.rotary_emb",
    # phi-3, falcon, mixtral
    "model.layers.0.self_attn.qkv_proj", "model.layers.3.mlp.gate_up_proj",
    "transformer.h.0.self_attention.query_key_value", "transformer.h.0.mlp.dense_h_to_4h",
    "model.layers.0.block_sparse_moe.experts.7.w1", "model.layers.0.block_sparse_moe.gate",
    # gemma3 / paligemma / mllama / qwen2-vl (vision + language towers)
    "language_model.model.layers.0.self_attn.q_proj",
    "language_model.model.layers.12.mlp.down_proj",
    "model.language_model.layers.5.self_attn.o_proj",
    "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj",
    "vision_tower.vision_model.encoder.layers.26.self_attn.out_proj",
    "vision_tower.vision_model.encoder.layers.0.mlp.fc1",
    "multi_modal_projector.mm_input_projection",
    "vision_model.transformer.layers.0.self_attn.v_proj",
    "language_model.model.layers.3.cross_attn.k_proj",
    "visual.blocks.0.attn.qkv", "visual.blocks.0.mlp.fc1", "visual.merger.mlp.0",
    "model.visual.blocks.1.attn.proj", "image_encoder.patch_embed.proj",
    "text_model.encoder.layers.0.self_attn.q_proj",
    "text_model.encoder.layers.11.mlp.fc2",
    "model.vision_encoder.layers.0.attention.dense.linear",
    "model.text_decoder.layers.0.feed_forward.linear",
    "patch_merger.attn.v_proj",
    # t5
    "encoder.block.0.layer.0.SelfAttention.q", "encoder.block.0.layer.0.SelfAttention.v",
    "decoder.block.0.layer.0.SelfAttention.q", "decoder.block.0.layer.0.SelfAttention.k",
    "decoder.block.0.layer.0.SelfAttention.v", "decoder.block.5.layer.1.EncDecAttention.q",
    "decoder.block.5.layer.1.EncDecAttention.o", "decoder.block.1.layer.2.DenseReluDense.wi",
    "decoder.block.0.layer.0.SelfAttention.relative_attention_bias",
    # bert / roberta
    "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value",
    "bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.11.intermediate.dense",
    "roberta.encoder.layer.3.attention.self.key", "classifier", "classifier.dense",
    # gpt-2 (Conv1D)
    "transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
    "transformer.h.11.mlp.c_fc", "transformer.wte", "transformer.ln_f",
    # stable diffusion unet / text encoder
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
    "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj",
    "unet.up_blocks.3.attentions.1.transformer_blocks.0.attn2.to_v",
    "to_v", "to_vv", "xto_v",
    # near misses and oddities
    "", "q_proj", ".q_proj", "q_proj.", "model.layers.x.self_attn.q_proj",
    "model.layers..self_attn.q_proj", "model.layers.0a.self_attn.q_proj",
    "model_layers_0_self_attn_q_proj", "modelXlayersX7Xself_attnXv_proj",
    "xmodel.layers.0.self_attn.v_proj", "amodel.layers.0.mlp.q_proj",
    "_model.layers.0.mlp.q_proj", "model.layers.0.mlp.q_proj", "model.layers.0.attn.o_proj",
    "model.layers.0.self_attn.q_projx", "model.layers.0.self_attn.q_proj\n",
    "model.layers.0.self_attn.q_proj\n\n", "model.layers.1.self_attn.k_proj ",
    "vision", "language.self_attn.linear", "text.mlp.q_proj.extra",
    "MODEL.LAYERS.0.SELF_ATTN.Q_PROJ",
]

# ---------------------------------------------------------------- patterns

# Patterns seen in real adapter configs (target_modules strings).
REAL_PATTERNS = [
    r"(?:.*?(?:vision|image|visual|patch|language|text).*?(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense).*?(?:linear|q_proj|k_proj|v_proj|o_proj).*?)|(?:\bmodel\.layers\.[\d]{1,}\.(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense)\.(?:(?:linear|q_proj|k_proj|v_proj|o_proj)))",
    r".*\.(q_proj|v_proj)",
    r"^(?!.*vision).*(q_proj|k_proj)$",
    r".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$",
    r"model.layers.\d+.self_attn.(q|k|v)_proj",
    r".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$",
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    r"model\.layers\.(1[0-9]|2[0-3])\.mlp\.(gate|up|down)_proj",
    r".*\.layers\.\d+\.(self_attn|mlp)\..*",
    r"^(?!.*(vision|visual)).*\.(q_proj|v_proj)$",
    r".*attn\.(c_attn|c_proj)",
    r".*(to_q|to_k|to_v|to_out\.0)",
    r"(?!lm_head).*",
    r".*\.(SelfAttention|EncDecAttention)\.[qkvo]",
    r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)",
]

# rank_pattern / alpha_pattern keys: PEFT tries
# re.match(rf"(.*\.)?({key})$", name); the key list shows the wrapped form.
RANK_KEYS = [
    "to_v", "q_proj", "layers.0.self_attn.q_proj", r"model.layers.1[0-5].*",
    r"to_out\.0", r"layers\.\d+\.mlp\..*", "SelfAttention.q",
]
RANK_PATTERNS = [rf"(.*\.)?({key})$" for key in RANK_KEYS]

# Edge cases, construct by construct: (patterns, subjects), crossed.
EDGE_GROUPS = [
    # literals and escapes
    ([r"abc", r"a\.c", r"a\\c", r"\(a\)", r"a\-b", r"a\ b", r"\#\&\~\%\"", r"\'",
      r"\@\!\,\;\:\<\>\=\_"],
     ["", "abc", "a.c", "a\\c", "(a)", "a-b", "a b", "#&~%\"", "'", "@!,;:<>=_", "xabcx"]),
    ([r"\{", r"a{", r"a{}", r"a{x}", r"a{1", r"a{,}", r"}", r"]", r"a{1,", r"a{,2"],
     ["", "{", "a{", "a{}", "a{x}", "a{1", "aaa", "}", "]", "a{1,", "a{,2", "a"]),
    ([r"\n", r"\t", r"a\x41", r"\x2e", r"\u0041", r"\U00000041", r"\101", r"\0",
      r"\a\f\v\r"],
     ["", "\n", "\t", "aA", "A", ".", "a", "\a\f\v\r", "n"]),
    # '.' and newlines
    ([r".", r"a.c", r".*", r".+", r"(?s).", r"(?s)a.c", r"..", r".*\n", r"(?s).*"],
     ["", "a", "\n", "abc", "a\nc", "a\rc", "ab", "a\n", "\n\n"]),
    # classes
    ([r"[abc]", r"[^abc]", r"[a-c]+", r"[]a]", r"[^]a]", r"[a-]", r"[-a]", r"[a\-z]",
      r"[\]]", r"[\\]", r"[.]", r"[a-c-e]", r"[+*?]", r"[(|)]", r"[$]", r"[-]", r"[a^]",
      r"[\^a]", r"[^-]", r"[[]"],
     ["", "a", "d", "]", "-", "z", "^", "\\", ".", "abc", "e", "+", "[", "|", "$"]),
    ([r"[\d]", r"[\D]", r"[\w.]+", r"[^\w]", r"[\s]", r"[\S]+", r"[\b]", r"[a-z0-9_]+",
      r"[\x41-\x43]", r"[^\W\d]+", r"[\n]", r"[0-9]{2}", r"[\d-]", r"[\101-\103]",
      r"[\t-\r]", r"[!-/]+"],
     ["", "a", "5", "_", " ", "\x1c", "\x08", "a1_", "B", "\n", "12", "-", "!/", "a.b_c",
      "\x0b"]),
    # quantifiers, greedy and lazy, counted, over groups
    ([r"a*", r"a+", r"a?", r"a{2}", r"a{2,}", r"a{,2}", r"a{1,3}", r"a{0}", r"a{0,0}",
      r"a*?", r"a+?", r"a??", r"a{2,3}?", r"(ab)*", r"(ab)+", r"(ab){2}", r"(ab){1,2}?",
      r"(?:ab)*?c", r"(a|b)*c", r"(a|ab)(c|bcd)(d*)", r"(a*)*", r"(a*)+", r"(a?){3}",
      r"(?:a|)*", r"(?:|a)+b", r"(a*)*b", r"x*y*z*", r"(?:a{2})*", r"(?:a{2}){2,}",
      r"a{3}a*", r"(?:a*?){2}b", r"(?:a|b)*?b", r"(a+|b+)*c", r"(?:a{0,2}){2}",
      r"(?:(?:a)?){2,3}", r"(?:)*a", r"(?:)+", r"(?:a*)*?b", r"a{1,3}?a", r"(a|)+?c",
      r"(?:ab|a)*?b", r"a{2,3}a{2,3}", r"(?:a+)?b"],
     ["", "a", "aa", "aaa", "aaaa", "aaaaa", "ab", "abab", "ababab", "abc", "abcd",
      "abbcd", "c", "b", "bc", "aac", "xyz", "xz", "aab", "bbc"]),
    # greedy versus lazy on names
    ([r".*?proj", r".*proj", r".+?\.", r"(.*?)\.(.*)", r"^.*?$", r".*?", r".??",
      r"a.*?b", r"a.*b", r"a.{2,}?b", r".*?\.(q|v)_proj", r"(.*?\.)?q_proj",
      r".*?layers\.(\d+?)\..*?"],
     ["", "axb", "ab", "aXXb", "aXXbYYb", "q_proj", "model.layers.0.self_attn.q_proj",
      "layers.12.mlp", "a.b", ".", "proj.proj"]),
    # anchors
    ([r"^a", r"a$", r"^a$", r"^$", r"$", r"^", r"\Aa", r"a\Z", r"\A\Z", "a$\n",
      "a\n$", r"(?m)^b", r"(?m)a$", r"(?m)^a$", "^\n", r"$a", r"a^", "(?m)$\n^",
      r"a\Z\n?", "\\Aa$\n?", r"(?m)^$", r"(?m)\Aa", r"^^a$$", r"a$$"],
     ["", "a", "ab", "ba", "a\n", "\n", "a\nb", "b\na", "\na", "a\n\n", "\n\n", "b\n"]),
    # word boundaries
    ([r"\b", r"\B", r"\ba", r"a\b", r"\bab\b", r"\Ba", r"a\B", r"\bq_proj\b",
      r"\b\w+\b", r"\b\.", r"\.\b", r"\Bproj", r".*\bq_proj", r"\b.*\b", r"\B.*\B",
      r"^\b$", r"^\B$"],
     ["", "a", "ab", " a", "a ", "a.b", "_a", "q_proj", "x.q_proj", "xq_proj",
      "q_proj.weight", "q_projx", "..", "a b", ".", " "]),
    # lookahead
    ([r"(?=a)", r"(?=a)a", r"(?!a)", r"(?!a).", r"a(?=b)", r"a(?!b)", r"(?=.*b).*",
      r"^(?!.*vision).*$", r"(?=(?!a)b)b", r"(?=a)*b", r"(?:(?=a)a)*b", r"(?!)", r"(?=)",
      r"(?=a|b)(?!b)\w", r"(?!.*\.lora_).*\.weight$", r"(?=(a+))a*b", r"(?!a*b)a*",
      r"(?:(?!b).)*", r"(?=a)?b", r"a(?=$)", r"(?!$).", r"(?=.*a)(?=.*b).*",
      r".*(?=b)", r".*?(?!a)", r"(?=(?=a)a)a"],
     ["", "a", "b", "ab", "ba", "aab", "aaa", "vision.q", "text.q", "x.weight",
      "x.lora_A.weight", "bab", "aaab"]),
    # alternation
    ([r"a|b", r"a|", r"|a", r"|", r"a||b", r"(a|)", r"(|a)b", r"ab|a", r"a|ab",
      r"(?:a|ab)(?:c|bcd)", r"(a|b|c)+", r"q_proj|k_proj", r"(?:q|k|v)_proj",
      r"x(?:)y", r"()", r"(?:a|b)(?:a|b)", r"a|b|c|d|e", r"(?:ab|cd|)+"],
     ["", "a", "b", "ab", "abc", "abcd", "q_proj", "k_proj", "v_proj", "o_proj",
      "xy", "c", "ba", "abcdab", "e"]),
    # categories
    ([r"\d+", r"\d{1,}", r"[\d]{1,}", r"\d{2}", r"\D+", r"\w+", r"\W", r"\s", r"\S+",
      r"layers\.\d{1,2}\.", r"\w*\d", r"\s*", r"[\s\d]+", r"[^\s]+", r"\d\D\w\W\s\S"],
     ["", "0", "12", "123", "a1", "layers.1.", "layers.123.", " ", "\t", "\x1c",
      "\x1f", "\x0b", "\x0c", "\r", "_", "-", "a", "1a_-\t.", "\x1d\x1e"]),
    # flags
    ([r"(?i)abc", r"(?i)[a-c]+", r"(?i)[^a]", r"(?i)Q_PROJ", r"(?i:a)b", r"a(?i:b)c",
      r"(?i)a(?-i:b)", r"(?a)\s", r"(?u)\s", r"(?m)^x", r"(?s).", r"(?ims)^a.b$",
      r"(?i)[Z-a]", r"(?i)\w", r"(?i)[^\W]", r"(?i)(?m)a$", r"(?a:\s)\s", r"(?-i:a)",
      r"(?i)\x41", r"(?i)[\x41]", r"(?si:A.)", r"(?i)[^b-y]", r"(?#c)(?i)a",
      r"(?is)(?-s:.)"],
     ["abc", "ABC", "aBc", "a", "A", "b", "B", "Q_PROJ", "\x1c", " ", "x", "a\nb", "_",
      "Z", "`", "[", "a\n", "\x1c\x1c", "Ab", "A\n"]),
    # group forms
    ([r"(?P<name>a)b", r"(?P<x1>a)(?P<y>b)", r"(?#comment)a", r"a(?#x)*", r"a(?#)b",
      r"(?:)", r"(?:(?:a))", r"((((a))))", r"(?:(?:(?:a|b)c)|d)+", r"(?P<_>a|b)+",
      r"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)", r"(?:a(?:b(?:c)?)?)?"],
     ["", "a", "ab", "b", "ac", "bc", "d", "acbcd", "abc", "abcdefghijk", "aab"]),
    # large counts
    ([r"a{0,1000}", r"(?:ab){3,5}", r"a{2,2}", r"a{1000}", r"(?:a|b){5,}?c",
      r"a{0,4294967294}", r"[ab]{3}?"],
     ["", "a", "aa", "ababab", "ababababab", "abababababab", "a" * 1000, "a" * 1001,
      "ababac", "aaaab", "aaaaac", "aba"]),
    # bounded backtracking that must still find the answer
    ([r"(a|aa)*b", r"(a|aa)*c", r"(?:a*)*c", r"(a+)+b", r"(.*)*x", r"(?:a|b|ab)*c"],
     ["aaaaaaaaaab", "aaaaaaaaaa", "abababababc", "ab" * 6, "c", ""]),
]

# Python rejects these; lib/regex.c must reject them too.
PYTHON_REJECTS = [
    "(", ")", "(ab", "ab)", "a)", "(?:a", "(a))", "[a", "[", "[]", "[^]", "[z-a]",
    r"[a-\d]", r"[\d-z]", "*a", "+", "?", "a**", "a*??", "a{2}{3}", "{2}", "^*",
    "$+", r"\b*", r"\A?", "a|*", "(*)", "x{2,1}", "a{4294967295}", "a{,4294967295}",
    "\\", "a\\", r"\e", r"\z", r"\q", r"\g", r"\i", r"[\z]", r"[\A]", r"[\B]", r"[\Z]",
    r"[\8]", r"\x4", r"\xg1", r"\u12", r"\U0011ffff", r"\2", r"(a)\2", r"\1",
    "(?P<1a>x)", "(?P<a>x)(?P<a>y)", "(?P<>x)", "(?P<a", "(?P", "(?Px)", "(?P<a-b>x)",
    "(?", "(?<a>x)", "(?z)", "(?L)", "(?au)", "a(?i)", "a|(?i)b", "((?i)a)",
    "(?i-i:a)", "(?-a:b)", "(?-u:b)", "(?t:a)", "(?i", "(?-i)", "(?i-)", "(?-:a)",
    "(?#unterminated", "(?=a", "(?!a", r"\777", r"[\777]", "(?#x)*", "(?i)*",
    "a*?*", "a+*", "a?{2}", "[a-", r"[\x4]", "a{2,1}?", "(?:)(?i)a", "x|(?m)y",
    r"\N", "(?iL)", "(?P<a>)(?P=b)", "(?<q", r"(a)\1\2", "(?P>a)",
]

# Python accepts these; lib/regex.c refuses them on purpose.
WE_REFUSE = [
    "(?<=a)b", "(?<!a)b", r"(a)\1", r"(a)(b)\2", "(?P<n>a)(?P=n)", "a*+", "a++", "a?+",
    "a{1,2}+", "(?>a)", "(?>a|b)c", "(a)(?(1)b|c)", "(?x)a b", "(?x: a)", "(?-x:a)",
    r"\N{DIGIT ZERO}", "\u00e9", "[\u00e9]", r"\xe9", r"\u00e9", r"[\xe9]", r"\200",
    "(?a)(?u:x)", "x*+y",
]

RANDOM_SEED = 20240601
RANDOM_PATTERNS = 100
RANDOM_SUBJECTS_PER_PATTERN = 4


def random_pattern(rng, depth=0):
    """A random pattern built only from constructs lib/regex.c supports."""
    def atom():
        kind = rng.randrange(12 if depth < 3 else 7)
        if kind < 3:
            return rng.choice(["a", "b", r"\.", "."])
        if kind == 3:
            return rng.choice(["[ab]", "[^a]", "[a-b.]", r"[\w]", r"\w", r"\W", "[^.]"])
        if kind in (4, 5):
            return rng.choice(["^", "$", r"\b", r"\B", r"\A", r"\Z"]), True
        if kind == 6:
            return rng.choice(["a", "b"])
        inner = random_pattern(rng, depth + 1)
        opener = rng.choice(["(", "(?:", "(?:", "(?=", "(?!"])
        return opener + inner + ")"

    def quantified():
        got = atom()
        if isinstance(got, tuple):
            return got[0]
        quant = rng.choice(["", "", "", "*", "+", "?", "{2}", "{1,2}", "{0,}", "{,2}"])
        if quant and rng.random() < 0.4:
            quant += "?"
        return got + quant

    branches = []
    for _ in range(1 + (rng.random() < 0.3)):
        branches.append("".join(quantified() for _ in range(rng.randrange(1, 4))))
    return "|".join(branches)


def random_cases():
    rng = random.Random(RANDOM_SEED)
    cases = []
    while len(cases) < RANDOM_PATTERNS * RANDOM_SUBJECTS_PER_PATTERN:
        pattern = random_pattern(rng)
        try:
            re.compile(pattern)
        except re.error:
            continue
        for _ in range(RANDOM_SUBJECTS_PER_PATTERN):
            subject = "".join(rng.choice("ab.") for _ in range(rng.randrange(0, 7)))
            cases.append((pattern, subject))
    return cases


def all_cases():
    cases = [(p, s) for p in REAL_PATTERNS + RANK_PATTERNS for s in MODULE_NAMES]
    for patterns, subjects in EDGE_GROUPS:
        cases += [(p, s) for p in patterns for s in subjects]
    cases += random_cases()
    return cases


def c_string(text):
    """A C string literal for text (ASCII); '?' after '?' is escaped so no
    trigraph can form, other control characters become octal escapes."""
    out = ['"']
    previous = ""
    for ch in text:
        code = ord(ch)
        if code > 0x7F:
            out.append("".join("\\%03o" % b for b in ch.encode("utf-8")))
        elif ch in '\\"':
            out.append("\\" + ch)
        elif ch == "?" and previous == "?":
            out.append("\\?")
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        else:
            out.append("\\%03o" % code)
        previous = ch
    out.append('"')
    return "".join(out)


def python_error(pattern):
    """Python's complaint about pattern, or None when it compiles."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, ValueError) as e:
        return "%s: %s" % (type(e).__name__, e)
    return None


def generate():
    cases_seen = set()
    lines = [
        "/*",
        " * regex_cases.inc - expected results for tests/test_regex.c.",
        " *",
        " * GENERATED by testdata/make_regex_cases.py from Python %s's `re`"
        % sys.version.split()[0],
        " * module; do not edit.  Regenerate after changing the script with:",
        " *     python3 testdata/make_regex_cases.py > tests/regex_cases.inc",
        " */",
        "",
    ]
    # Each distinct pattern and subject is written once, as P<n> / S<n>;
    # the case table refers to them.
    cases = []
    for case in all_cases():
        if case not in cases_seen:
            cases_seen.add(case)
            cases.append(case)
    patterns, subjects = {}, {}
    for pattern, subject in cases:
        error = python_error(pattern)
        if error:
            raise SystemExit("case pattern %r does not compile in Python: %s" % (pattern, error))
        if pattern not in patterns:
            patterns[pattern] = len(patterns)
            lines.append("static const char P%d[] = %s;" % (patterns[pattern], c_string(pattern)))
    for pattern, subject in cases:
        if subject not in subjects:
            subjects[subject] = len(subjects)
            lines.append("static const char S%d[] = %s;" % (subjects[subject], c_string(subject)))
    lines.append("")
    lines.append("static const struct regex_case {")
    lines.append("    const char *pattern, *subject;")
    lines.append("    int fullmatch, search; /* re.fullmatch / re.search found a match */")
    lines.append("} regex_cases[] = {")
    for pattern, subject in cases:
        full = re.fullmatch(pattern, subject) is not None
        found = re.search(pattern, subject) is not None
        lines.append("    {P%d, S%d, %d, %d}," % (patterns[pattern], subjects[subject], full, found))
    count = len(cases)
    lines.append("};")
    lines.append("")
    lines.append("static const struct regex_reject {")
    lines.append("    const char *pattern;")
    lines.append("    int python_rejects;        /* else: Python accepts, we refuse on purpose */")
    lines.append("    const char *python_error;  /* \"\" when Python accepts */")
    lines.append("} regex_rejects[] = {")
    for pattern in PYTHON_REJECTS:
        error = python_error(pattern)
        if not error:
            raise SystemExit("PYTHON_REJECTS pattern %r compiles in Python" % pattern)
        lines.append("    {%s, 1, %s}," % (c_string(pattern), c_string(error)))
    for pattern in WE_REFUSE:
        error = python_error(pattern)
        if error:
            raise SystemExit("WE_REFUSE pattern %r does not compile in Python: %s" % (pattern, error))
        lines.append("    {%s, 0, \"\"}," % c_string(pattern))
    lines.append("};")
    return "\n".join(lines) + "\n", count


def data_part(text):
    """The table without its header comment (which names the Python version)."""
    return text[text.index("static const char P0"):]


def main():
    warnings.simplefilter("ignore")  # FutureWarning for "[[" and the like
    text, count = generate()
    if len(sys.argv) < 2:
        sys.stdout.write(text)
        return 0
    os.makedirs(sys.argv[1], exist_ok=True)
    generated = os.path.join(sys.argv[1], "regex_cases.inc")
    with open(generated, "w") as f:
        f.write(text)
    checked_in = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "regex_cases.inc")
    with open(checked_in) as f:
        current = f.read()
    if data_part(current) != data_part(text):
        print("tests/regex_cases.inc differs from what this Python (%s) computes;"
              " compare with %s, and regenerate with:\n"
              "    python3 testdata/make_regex_cases.py > tests/regex_cases.inc"
              % (sys.version.split()[0], generated))
        return 1
    print("tests/regex_cases.inc is up to date (%d cases)" % count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
