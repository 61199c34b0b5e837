"""Per block of one middle launch of the QKV + fc1 pair and of the dense + fc2 sum, from a trace
that trace.sh writes (format in trace_analysis.py): when blocks started, passed their wait and
ended, relative to the launch's first wait, in us; blocks per SM; the latest and earliest blocks.
Usage: python3 trace_blocks.py trace_512.bin (then trace_1920.bin)"""
import struct,sys,collections,statistics
names={0:'logits',1:'pair',2:'sum',3:'split',4:'merge',5:'ln'}
fn=sys.argv[1]
b=open(fn,'rb').read(); n=struct.unpack('<I',b[:4])[0]
recs=list(struct.iter_unpack('<QQQII',b[4:4+32*n]))
by=collections.defaultdict(list)
for r in recs: by[r[3]&0xff].append(r)
for k in (1,2):
    lst=sorted(by[k]); segs=[[lst[0]]]
    for r in lst[1:]:
        if r[0]-segs[-1][-1][0]>25000: segs.append([r])
        else: segs[-1].append(r)
    seg=segs[len(segs)//2]  # a middle launch
    blocks=collections.defaultdict(list)
    for r in seg: blocks[r[4]].append(r)
    t_ref=min(r[1] for r in seg if r[1]>0)
    rows=[]
    for blk,rs in blocks.items():
        st=min(r[0] for r in rs); w=min(r[1] for r in rs if r[1]>0); e=max(r[2] for r in rs); sm=(rs[0][3]>>16)
        rows.append(((st-t_ref)/1000,(w-t_ref)/1000,(e-t_ref)/1000,sm))
    ends=sorted(x[2] for x in rows); waits=sorted(x[1] for x in rows); starts=sorted(x[0] for x in rows)
    q=lambda v,p: v[int(p*(len(v)-1))]
    print(names[k],'blocks',len(rows),'launches',len(segs))
    print('  start  min/p50/max %.2f %.2f %.2f'%(starts[0],q(starts,.5),starts[-1]))
    print('  wait   min/p50/max %.2f %.2f %.2f'%(waits[0],q(waits,.5),waits[-1]))
    print('  end    min/p10/p50/p90/max %.2f %.2f %.2f %.2f %.2f'%(ends[0],q(ends,.1),q(ends,.5),q(ends,.9),ends[-1]))
    dur=sorted(x[2]-max(x[1],x[0]) for x in rows)
    print('  work (end - max(start,wait)) min/p50/max %.2f %.2f %.2f'%(dur[0],q(dur,.5),dur[-1]))
    # blocks per SM and per-SM end
    persm=collections.defaultdict(list)
    for x in rows: persm[x[3]].append(x)
    cnt=collections.Counter(len(v) for v in persm.values()); print('  blocks per SM:',dict(cnt))
    late=sorted(rows,key=lambda x:-x[2])[:8]; print('  latest blocks (start,wait,end,sm):',[tuple(round(v,2) for v in x[:3])+(x[3],) for x in late])
    early=sorted(rows,key=lambda x:x[2])[:5]; print('  earliest-ending:',[tuple(round(v,2) for v in x[:3])+(x[3],) for x in early])
