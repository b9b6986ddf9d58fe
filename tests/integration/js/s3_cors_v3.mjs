// s3_cors_v3.mjs: what a web page using the AWS SDK for JavaScript v3 makes
// the browser do against Walrus: the bucket's CORS rules set with the SDK,
// the preflight OPTIONS the browser sends before a signed PUT (with the
// headers the SDK signs), and the Access-Control-* headers the browser
// checks on the real answer.  Node does not enforce CORS, so this script
// checks what a browser would.
// Usage: node s3_cors_v3.mjs ENDPOINT BUCKET (keys in AWS_* variables).
// Prints one line per check; exits 1 at the first failure.
import {
  S3Client, CreateBucketCommand, PutBucketCorsCommand, GetBucketCorsCommand,
  DeleteBucketCorsCommand, PutObjectCommand, DeleteObjectCommand,
  DeleteBucketCommand,
} from "@aws-sdk/client-s3";

const [endpoint, bucket] = process.argv.slice(2);
const ORIGIN = "https://app.example.com";
const s3 = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true });

function check(what, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${what}${detail ? ": " + detail : ""}`);
  if (!ok) process.exit(1);
}

await s3.send(new CreateBucketCommand({ Bucket: bucket }));
await s3.send(new PutBucketCorsCommand({ Bucket: bucket, CORSConfiguration: {
  CORSRules: [{ AllowedOrigins: [ORIGIN], AllowedMethods: ["GET", "PUT"],
                AllowedHeaders: ["*"], ExposeHeaders: ["ETag"],
                MaxAgeSeconds: 300 }] } }));
const got = await s3.send(new GetBucketCorsCommand({ Bucket: bucket }));
check("get cors", got.CORSRules?.[0]?.AllowedOrigins?.[0] === ORIGIN,
      JSON.stringify(got.CORSRules));

// The preflight a browser sends before the SDK's signed PUT.
const url = `${endpoint}/${bucket}/from-page.txt`;
const sdkHeaders = "amz-sdk-invocation-id,amz-sdk-request,authorization," +
  "content-type,x-amz-content-sha256,x-amz-date,x-amz-user-agent," +
  "x-amz-checksum-crc32,x-amz-sdk-checksum-algorithm";
let r = await fetch(url, { method: "OPTIONS", headers: {
  Origin: ORIGIN, "Access-Control-Request-Method": "PUT",
  "Access-Control-Request-Headers": sdkHeaders } });
check("preflight allowed", r.status === 200, String(r.status));
check("preflight origin", r.headers.get("access-control-allow-origin") === ORIGIN,
      r.headers.get("access-control-allow-origin"));
check("preflight methods",
      (r.headers.get("access-control-allow-methods") || "").includes("PUT"));
check("preflight headers",
      r.headers.get("access-control-allow-headers") === sdkHeaders);
check("preflight max age", r.headers.get("access-control-max-age") === "300");

// The real request, with the Origin the browser adds; the browser lets the
// page read ETag only if it is exposed.
let seen = {};
s3.middlewareStack.add((next) => async (args) => {
  args.request.headers.origin = ORIGIN;
  const out = await next(args);
  seen = out.response.headers;
  return out;
}, { step: "finalizeRequest", name: "browserOrigin", priority: "low" });
const put = await s3.send(new PutObjectCommand({ Bucket: bucket,
  Key: "from-page.txt", Body: "uploaded from a page" }));
check("put from page", typeof put.ETag === "string", put.ETag);
check("answer allows origin", seen["access-control-allow-origin"] === ORIGIN,
      seen["access-control-allow-origin"]);
check("answer exposes ETag", seen["access-control-expose-headers"] === "ETag",
      seen["access-control-expose-headers"]);

// Another origin is refused at the preflight, so the browser never sends.
r = await fetch(url, { method: "OPTIONS", headers: {
  Origin: "https://evil.example.com", "Access-Control-Request-Method": "PUT" } });
check("other origin refused", r.status === 403, String(r.status));
check("refusal names AccessForbidden", (await r.text()).includes("AccessForbidden"));

await s3.send(new DeleteBucketCorsCommand({ Bucket: bucket }));
r = await fetch(url, { method: "OPTIONS", headers: {
  Origin: ORIGIN, "Access-Control-Request-Method": "GET" } });
check("no rules, no CORS", r.status === 403, String(r.status));

await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "from-page.txt" }));
await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
check("cleanup", true);
