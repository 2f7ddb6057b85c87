// gguf_infos.mjs OUT.json FILE.gguf... - parses each file with
// @huggingface/gguf (an independent GGUF reader) and writes what it saw in
// the shape of `loratool inspect --json --tensors`: version, alignment,
// key-value pairs ({type, value}; arrays {type, length, value up to 16
// elements}), tensor names, types,
// shapes (outermost first) and data offsets.  A file it cannot parse gets
// {"error": "..."}.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [outPath, ...files] = process.argv.slice(2);
const modules = process.env.LT_NODE_MODULES;
const hf = await import(pathToFileURL(join(modules, "@huggingface", "gguf", "dist", "index.mjs")).href);
const { gguf, GGMLQuantizationType, GGUFValueType } = hf;

const typeName = {
    [GGUFValueType.UINT8]: "u8", [GGUFValueType.INT8]: "i8", [GGUFValueType.UINT16]: "u16",
    [GGUFValueType.INT16]: "i16", [GGUFValueType.UINT32]: "u32", [GGUFValueType.INT32]: "i32",
    [GGUFValueType.FLOAT32]: "f32", [GGUFValueType.BOOL]: "bool", [GGUFValueType.STRING]: "string",
    [GGUFValueType.UINT64]: "u64", [GGUFValueType.INT64]: "i64", [GGUFValueType.FLOAT64]: "f64",
};
const plain = (v) => (typeof v === "bigint" ? Number(v) : v);

const out = {};
for (const file of files) {
    try {
        const parsed = await gguf(file, { allowLocalFile: true, typedMetadata: true });
        const kv = {};
        for (const [key, entry] of Object.entries(parsed.typedMetadata)) {
            if (key === "version" || key === "tensor_count" || key === "kv_count")
                continue;
            // as loratool prints them: arrays of up to 16 elements with their values
            kv[key] = entry.type === GGUFValueType.ARRAY
                ? { type: typeName[entry.subType] ?? String(entry.subType), length: entry.value.length,
                    value: entry.value.length <= 16 ? entry.value.map(plain) : undefined }
                : { type: typeName[entry.type] ?? String(entry.type), value: plain(entry.value) };
        }
        const tensors = parsed.tensorInfos.map((t) => ({
            name: t.name, dtype: GGMLQuantizationType[t.dtype] ?? String(t.dtype),
            shape: t.shape.map(Number).reverse(), offset: Number(t.offset),
        }));
        out[file] = { version: plain(parsed.metadata.version), kv, tensors };
    } catch (e) {
        out[file] = { error: String(e && e.message ? e.message : e) };
    }
}
writeFileSync(outPath, JSON.stringify(out));
