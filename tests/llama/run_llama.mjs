// run_llama.mjs JOBS.json OUT.json - runs llama.cpp (node-llama-cpp) on
// the models of a job list and writes, for every position of the prompt,
// the log-probabilities of the most likely next tokens.
//
// JOBS.json: {"prompt": [token ids], "top": K, "jobs": [{"name", "model",
// "lora": path or null}]}.  OUT.json: {"name": {"ok": true, "positions":
// [[[token, logprob], ...K], ...]} or {"ok": false, "error": "..."}}.
// NODE_PATH-free: node_modules is found through LT_NODE_MODULES.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [jobsPath, outPath] = process.argv.slice(2);
const modules = process.env.LT_NODE_MODULES;
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(modules, "node-llama-cpp", "dist", "index.js")).href);

const spec = JSON.parse(readFileSync(jobsPath, "utf8"));
// never compile or download: the prebuilt CPU binary or a failure
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, usePrebuiltBinaries: true });
const results = {};
for (const job of spec.jobs) {
    let model = null;
    try {
        model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
        const context = await model.createContext({
            contextSize: 64, batchSize: 64, sequences: 1, threads: 2,
            // F32 KV cache: the default F16 cache alone moves log-probabilities by ~1e-3
            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
            lora: job.lora ? { adapters: [{ filePath: job.lora, scale: 1 }] } : undefined,
        });
        const sequence = context.getSequence();
        // temperature 1 and no truncation: the probabilities are softmax(logits) over the whole vocabulary
        const options = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
        const input = spec.prompt.map((t) => [t, { generateNext: { probabilities: true, options } }]);
        const out = await sequence.controlledEvaluate(input);
        const positions = [];
        for (let i = 0; i < spec.prompt.length; i++) {
            const probs = out[i]?.next?.probabilities;
            if (!probs)
                throw new Error(`no probabilities at position ${i}`);
            const top = [];
            for (const [token, p] of probs) {
                if (top.length >= spec.top)
                    break;
                top.push([token, Math.log(p)]);
            }
            positions.push(top);
            if (i === 0)
                results[job.name + ":vocab"] = { entries: probs.size, sum: [...probs.values()].reduce((a, b) => a + b, 0) };
        }
        results[job.name] = { ok: true, positions };
        await context.dispose();
    } catch (e) {
        results[job.name] = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    if (model)
        await model.dispose();
}
writeFileSync(outPath, JSON.stringify(results));
await llama.dispose();
