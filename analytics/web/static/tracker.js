/*! analytics tracker. Embed: <script defer src="https://HOST/tracker.js" data-site-id="SITE" data-user-id="optional">
 * Sends {site_id,event_type:"page_view",path,user_id,timestamp} to HOST/api/ingestion/event as a text/plain beacon
 * (no CORS preflight; fetch keepalive if sendBeacon is missing or refuses): on load, and on history.pushState,
 * history.replaceState and popstate when location.pathname differs from the last path sent (query/hash changes and
 * same-path pushes send nothing). user_id: window.analyticsUserId if set (read at each send), else data-user-id,
 * else null; cut to 256 characters (path to 2048), so a long one cannot turn every beacon into a 400. No
 * data-site-id: does nothing. window.analytics.track() sends a view of the current path now (set only if
 * window.analytics is not already taken). */
(()=>{const s=document.currentScript,d=s&&s.dataset,i=d&&d.siteId,w=window,h=history;if(!i||!s.src||h.pushState._a)return;
const u=new URL(s.src).origin+"/api/ingestion/event";let l;
const t=f=>{const p=location.pathname,v=w.analyticsUserId||d.userId;if(!f&&p===l)return;l=p;
const b=JSON.stringify({site_id:i,event_type:"page_view",path:p.slice(0,2048),user_id:v?(""+v).slice(0,256):null,timestamp:new Date().toISOString()});let k;
try{k=navigator.sendBeacon(u,new Blob([b],{type:"text/plain"}))}catch(e){}
k||fetch(u,{method:"POST",body:b,keepalive:!0,mode:"no-cors",headers:{"Content-Type":"text/plain"}}).catch(()=>{})};
for(const m of["pushState","replaceState"]){const o=h[m],n=function(){const r=o.apply(this,arguments);t();return r};n._a=1;h[m]=n}
addEventListener("popstate",()=>t());w.analytics||(w.analytics={track:()=>t(1)});t()})();
